"""The registry of every secret: its name, purpose, kind, where it is required, who reads it and how it rotates.

This module owns `SECRETS` (one `SecretSpec` per secret, in the order every report lists them), the environments,
the uid each reading service runs as, and the PostgreSQL roles and Redis users whose passwords are secrets.
Who reads a secret is not written here: it comes from the stack model (`model.SERVICES`, the secrets each service
mounts), so the compose secrets overlay, the model and this registry cannot disagree.

Names are Swarm-compatible (lowercase, digits, underscores, under 64 characters), so the same files can later be
served by `docker secret create NAME secrets/NAME`; `swarm_secret_names()` lists them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from .. import model
from ..errors import BadInput, OpsError

Kind = Literal["generated", "user", "derived"]

APP_UID = model.APP_UID
# What the API's Redis user may do: the summary cache (GET/SET/DEL on summary:*), the health probe's write
# (SET on health:*, which is how a Redis that refuses writes is noticed), PING, naming its connection, and
# being told when a summary key changes (CLIENT TRACKING: each process keeps copies while it is told).
# Everything else is refused, -@dangerous (CONFIG, FLUSHALL, SHUTDOWN, KEYS, ...) first of all.
REDIS_APP_RULES = (
    "resetkeys ~summary:* ~health:* resetchannels -@all -@dangerous +get +set +del +ping +client|setname"
    " +client|tracking"
)
# The toolkit's own user, for ACL changes (rotation) through `docker exec`; its password is a secret that no
# container reads, so the API cannot become it.
REDIS_ADMIN_RULES = "~* &* +@all"
# The Redis exporter's user: no keys, no channels, only the commands that read the server's state.
REDIS_MONITOR_RULES = (
    "resetkeys resetchannels -@all +ping +info +config|get +slowlog|get +slowlog|len +latency|latest +client|setname"
)
# The user Prometheus and the toolkit log in to Prometheus and Alertmanager as (basic auth).
MONITORING_USER = "ops"
# The uid each service runs as (the model's, all APP_UID today). Each container runs as uid:gid N:N, so the gid
# of a secret file is the uid too.
SERVICE_UIDS: Mapping[str, int] = MappingProxyType({service.name: service.uid for service in model.SERVICES})
DEFAULT_DB_ROLE = model.DATABASE_OWNER
# The PostgreSQL role whose password each secret is (the migrate job creates the runtime ones).
POSTGRES_ROLES: Mapping[str, str] = MappingProxyType(model.POSTGRES_ROLES)
# The Redis ACL user whose password each secret is, for live rotation.
REDIS_USERS: Mapping[str, str] = MappingProxyType(model.REDIS_USERS)


@dataclass(frozen=True)
class SecretSpec:
    """One secret: what it is for, where it comes from, who reads it, and how it is checked and rotated."""

    name: str
    purpose: str
    kind: Kind
    required_in: frozenset[str]
    rotation: str
    pattern: re.Pattern[str]
    rule: str  # the pattern in words, for messages
    strength_checked: bool = False
    generate_bytes: int = 0
    derived_from: tuple[str, ...] = ()  # the secrets a derived one is made from
    # Services that must restart to pick up a new value; the data services read theirs only at first start.
    restart_on_rotate: tuple[str, ...] = ()
    without: str = ""  # what runs differently when an optional secret is absent
    # False for a key that data already written depends on (the backup repositories' cipher key).
    rotatable: bool = True

    @property
    def env_var(self) -> str:
        """The variable that supplies this secret in an env file or the environment."""
        return self.name.upper()

    @property
    def consumers(self) -> tuple[str, ...]:
        """The services that read this secret, in the model's service order.

        Those that mount it; for a secret no container mounts (redis_admin_password), those that mount what is
        derived from it (redis: the hash in redis_acl), since its file is owned for them."""
        direct = model.readers(self.name)
        if direct:
            return direct
        made_from_it = {spec.name for spec in SECRETS if self.name in spec.derived_from}
        return tuple(service.name for service in model.SERVICES if made_from_it.intersection(service.secrets))

    def required(self, env: str) -> bool:
        """Whether a deployment to `env` needs this secret."""
        return env in self.required_in


_EVERYWHERE = frozenset(model.ENVIRONMENTS)
_DEPLOYED = frozenset({"staging", "prod"})
_NOWHERE: frozenset[str] = frozenset()
# Printable ASCII without whitespace: survives env files, SQL literals and (URL-encoded) connection strings.
_PRINTABLE = re.compile(r"[!-~]+", re.ASCII)
_PRINTABLE_RULE = "printable ASCII without spaces"

SECRETS: tuple[SecretSpec, ...] = (
    SecretSpec(
        name="postgres_password",
        purpose="password of the database owner `analyticbot` (superuser: init, migrations, backup and restore)",
        kind="generated",
        required_in=_EVERYWHERE,
        rotation="`invoke secrets.rotate postgres_password`: ALTER ROLE, swap the file (the migrate job reads it "
        "at the next deploy).",
        pattern=_PRINTABLE,
        rule=_PRINTABLE_RULE,
        strength_checked=True,
        generate_bytes=32,
    ),
    SecretSpec(
        name="postgres_api_password",
        purpose="password of the API's own PostgreSQL role `analyticbot_api` (no superuser, only its grants)",
        kind="generated",
        required_in=_EVERYWHERE,
        rotation="`invoke secrets.rotate postgres_api_password`: ALTER ROLE, swap the file, restart api.",
        pattern=_PRINTABLE,
        rule=_PRINTABLE_RULE,
        strength_checked=True,
        generate_bytes=32,
        restart_on_rotate=("api",),
    ),
    SecretSpec(
        name="postgres_collector_password",
        purpose="password of the collector's own PostgreSQL role `analyticbot_collector`",
        kind="generated",
        required_in=_EVERYWHERE,
        rotation="`invoke secrets.rotate postgres_collector_password`: ALTER ROLE, swap the file, restart mtproto.",
        pattern=_PRINTABLE,
        rule=_PRINTABLE_RULE,
        strength_checked=True,
        generate_bytes=32,
        restart_on_rotate=("mtproto",),
    ),
    SecretSpec(
        name="redis_password",
        purpose="password of the Redis user `analyticbot` that the API connects as",
        kind="generated",
        required_in=_EVERYWHERE,
        rotation="`invoke secrets.rotate redis_password`: set it in the live Redis ACL, swap it and redis_acl, "
        "restart the api.",
        pattern=_PRINTABLE,
        rule=_PRINTABLE_RULE,
        strength_checked=True,
        generate_bytes=32,
        restart_on_rotate=("api",),
    ),
    SecretSpec(
        name="redis_admin_password",
        purpose="password of the Redis user `ops`, which only the toolkit uses (ACL changes during rotation)",
        kind="generated",
        required_in=_EVERYWHERE,
        rotation="`invoke secrets.rotate redis_admin_password`: set it in the live Redis ACL, swap it and redis_acl.",
        pattern=_PRINTABLE,
        rule=_PRINTABLE_RULE,
        strength_checked=True,
        generate_bytes=32,
    ),
    SecretSpec(
        name="redis_monitor_password",
        purpose="password of the Redis user `monitor` that the Redis exporter connects as (no keys, read-only "
        "commands)",
        kind="generated",
        required_in=_EVERYWHERE,
        rotation="`invoke secrets.rotate redis_monitor_password`: set it in the live Redis ACL, swap it, redis_acl "
        "and redis_monitor_auth, restart redis-exporter.",
        pattern=_PRINTABLE,
        rule=_PRINTABLE_RULE,
        strength_checked=True,
        generate_bytes=32,
        restart_on_rotate=("redis-exporter",),
    ),
    SecretSpec(
        name="redis_acl",
        purpose="Redis ACL file holding the sha256 of the Redis users' passwords, never a password",
        kind="derived",
        required_in=_EVERYWHERE,
        rotation="Derived: rewritten whenever a Redis user's password is created or rotated.",
        pattern=re.compile(
            r"user default on nopass resetchannels -@all \+ping\n"
            r"user analyticbot on #[0-9a-f]{64} " + re.escape(REDIS_APP_RULES) + r"\n"
            r"user ops on #[0-9a-f]{64} " + re.escape(REDIS_ADMIN_RULES) + r"\n"
            r"user monitor on #[0-9a-f]{64} " + re.escape(REDIS_MONITOR_RULES),
            re.ASCII,
        ),
        rule=f"`user default on nopass resetchannels -@all +ping`, `user analyticbot on #<sha256 hex> "
        f"{REDIS_APP_RULES}`, `user ops on #<sha256 hex> {REDIS_ADMIN_RULES}`, `user monitor on #<sha256 hex> "
        f"{REDIS_MONITOR_RULES}`",
        derived_from=("redis_password", "redis_admin_password", "redis_monitor_password"),
    ),
    SecretSpec(
        name="redis_monitor_auth",
        purpose="the Redis exporter's password file: JSON mapping the Redis address to redis_monitor_password",
        kind="derived",
        required_in=_EVERYWHERE,
        rotation="Derived: rewritten whenever redis_monitor_password is created or rotated.",
        pattern=re.compile(r'\{"redis://redis:6379": "[!-~]+"\}', re.ASCII),
        rule='`{"redis://redis:6379": "<redis_monitor_password>"}`',
        derived_from=("redis_monitor_password",),
    ),
    SecretSpec(
        name="postgres_monitor_password",
        purpose="password of the PostgreSQL role `analyticbot_monitor` (pg_monitor and nothing else) that the "
        "PostgreSQL exporter connects as",
        kind="generated",
        required_in=_EVERYWHERE,
        rotation="`invoke secrets.rotate postgres_monitor_password`: ALTER ROLE, swap the file, restart "
        "postgres-exporter.",
        pattern=_PRINTABLE,
        rule=_PRINTABLE_RULE,
        strength_checked=True,
        generate_bytes=32,
        restart_on_rotate=("postgres-exporter",),
    ),
    SecretSpec(
        name="prometheus_password",
        purpose="password of the user `ops` on Prometheus and Alertmanager (their UIs, APIs and each other)",
        kind="generated",
        required_in=_EVERYWHERE,
        rotation="`invoke secrets.rotate prometheus_password`: swap it and prometheus_web_config, restart prometheus "
        "and alertmanager.",
        # bcrypt, which the web config holds, reads at most 72 bytes of a password.
        pattern=re.compile(r"[!-~]{1,72}", re.ASCII),
        rule=f"{_PRINTABLE_RULE}, at most 72 characters (bcrypt's limit)",
        strength_checked=True,
        generate_bytes=32,
        restart_on_rotate=("prometheus", "alertmanager"),
    ),
    SecretSpec(
        name="prometheus_web_config",
        purpose="web config of Prometheus and Alertmanager: the bcrypt hash of prometheus_password, never the password",
        kind="derived",
        required_in=_EVERYWHERE,
        rotation="Derived: rewritten whenever prometheus_password is created or rotated.",
        pattern=re.compile(
            r"basic_auth_users:\n  " + re.escape(MONITORING_USER) + r": '\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}'",
            re.ASCII,
        ),
        rule=f"`basic_auth_users:` with `{MONITORING_USER}: '<bcrypt hash>'`",
        derived_from=("prometheus_password",),
    ),
    SecretSpec(
        name="pgbackrest_cipher_pass",
        purpose="key pgBackRest encrypts both backup repositories with (aes-256-cbc): every backup and WAL segment",
        kind="generated",
        required_in=_EVERYWHERE,
        rotation="Not rotatable in place: the repositories were encrypted with it. Keep a copy off the host; "
        "without it no backup can be read.",
        pattern=re.compile(r"[A-Za-z0-9_-]{32,}", re.ASCII),
        rule="32 or more characters of [A-Za-z0-9_-]",
        strength_checked=True,
        generate_bytes=48,
        rotatable=False,
    ),
    SecretSpec(
        name="pgbackrest_db_conf",
        purpose="pgBackRest settings on the database side (postgres, backup-agent): the cipher key of "
        "repository 1 and 2",
        kind="derived",
        required_in=_EVERYWHERE,
        rotation="Derived: written when pgbackrest_cipher_pass is created.",
        pattern=re.compile(
            r"\[global\]\nrepo1-cipher-pass=[A-Za-z0-9_-]{32,}\nrepo2-cipher-pass=[A-Za-z0-9_-]{32,}", re.ASCII
        ),
        rule="`[global]`, `repo1-cipher-pass=<key>`, `repo2-cipher-pass=<key>`",
        derived_from=("pgbackrest_cipher_pass",),
    ),
    SecretSpec(
        name="pgbackrest_repo_conf",
        purpose="pgBackRest settings on the repository host (backup-repo): the cipher key of repository 2",
        kind="derived",
        required_in=_EVERYWHERE,
        rotation="Derived: written when pgbackrest_cipher_pass is created.",
        pattern=re.compile(r"\[global\]\nrepo2-cipher-pass=[A-Za-z0-9_-]{32,}", re.ASCII),
        rule="`[global]`, `repo2-cipher-pass=<key>`",
        derived_from=("pgbackrest_cipher_pass",),
    ),
    SecretSpec(
        name="alert_webhook_token",
        purpose="bearer token Alertmanager sends with each alert to the bot's /alerts webhook",
        kind="generated",
        required_in=_EVERYWHERE,
        rotation="`invoke secrets.rotate alert_webhook_token`: swap, restart alertmanager and bot.",
        pattern=re.compile(r"[A-Za-z0-9_-]{32,}", re.ASCII),
        rule="32 or more characters of [A-Za-z0-9_-]",
        strength_checked=True,
        generate_bytes=32,
        restart_on_rotate=("alertmanager", "bot"),
    ),
    SecretSpec(
        name="jwt_secret_key",
        purpose="key that signs the API's JSON Web Tokens",
        kind="generated",
        required_in=_EVERYWHERE,
        rotation="`invoke secrets.rotate jwt_secret_key`: swap it and api_read_token, restart api and bot; "
        "issued tokens stop working.",
        pattern=_PRINTABLE,
        rule=_PRINTABLE_RULE,
        strength_checked=True,
        generate_bytes=64,
        restart_on_rotate=("api", "bot"),
    ),
    SecretSpec(
        name="api_read_token",
        purpose="the bot's read-scope bearer token for the API, signed with jwt_secret_key (valid 365 days)",
        kind="derived",
        required_in=_EVERYWHERE,
        rotation="Derived: minted again whenever jwt_secret_key is created or rotated.",
        pattern=re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", re.ASCII),
        rule="a JSON Web Token (three base64url parts)",
        derived_from=("jwt_secret_key",),
    ),
    SecretSpec(
        name="telegram_webhook_secret",
        purpose="secret_token Telegram sends with every webhook call to the bot",
        kind="generated",
        required_in=_EVERYWHERE,
        rotation="`invoke secrets.rotate telegram_webhook_secret`: swap, restart bot, which sets its webhook again.",
        pattern=re.compile(r"[A-Za-z0-9_-]{1,256}", re.ASCII),
        rule="Telegram's secret_token rule ^[A-Za-z0-9_-]{1,256}$",
        strength_checked=True,
        generate_bytes=32,
        restart_on_rotate=("bot",),
    ),
    SecretSpec(
        name="bot_token",
        purpose="Telegram Bot API token from @BotFather",
        kind="user",
        required_in=_DEPLOYED,
        rotation="/revoke in @BotFather, then `invoke secrets.from-env --force` with the new BOT_TOKEN; restart bot.",
        # re.ASCII: a bare \d would also accept other scripts' digits.
        pattern=re.compile(r"\d+:[A-Za-z0-9_-]{35}", re.ASCII),
        rule=r"^\d+:[A-Za-z0-9_-]{35}$",
        without="the bot runs degraded",
    ),
    SecretSpec(
        name="alert_chat_id",
        purpose="Telegram chat id of the operators, where the bot sends alerts (a group's id starts with -100)",
        kind="user",
        required_in=_NOWHERE,
        rotation="Fixed per chat; change with `invoke secrets.from-env --force`, restart bot.",
        # The bot's own rule (services/bot/analyticbot_bot/settings.py): a chat id it would not use is refused
        # here, not left to page nobody.
        pattern=re.compile(r"-?[1-9][0-9]{0,15}", re.ASCII),
        rule="an integer chat id of at most 16 digits, no leading zero (negative for groups)",
        without="alerts are logged by the bot, not sent",
    ),
    SecretSpec(
        name="stripe_secret_key",
        purpose="Stripe API secret key",
        kind="user",
        required_in=_NOWHERE,
        rotation="Roll the key in the Stripe dashboard, then `invoke secrets.from-env --force`; restart api.",
        pattern=re.compile(r"sk_(test|live)_[A-Za-z0-9]{16,}", re.ASCII),
        rule="^sk_(test|live)_[A-Za-z0-9]{16,}$",
        without="the api runs without Stripe",
    ),
    SecretSpec(
        name="openai_api_key",
        purpose="OpenAI API key",
        kind="user",
        required_in=_NOWHERE,
        rotation="Create a new key, `invoke secrets.from-env --force`, restart api, then revoke the old key.",
        pattern=re.compile(r"sk-[A-Za-z0-9_-]{20,}", re.ASCII),
        rule="^sk-[A-Za-z0-9_-]{20,}$",
        without="the api runs without OpenAI",
    ),
    SecretSpec(
        name="telegram_api_id",
        purpose="api_id of the Telegram application (my.telegram.org) used by the MTProto collector",
        kind="user",
        required_in=_NOWHERE,
        rotation="Fixed per Telegram application; change with `invoke secrets.from-env --force`, restart mtproto.",
        pattern=re.compile(r"[0-9]{1,20}", re.ASCII),
        rule="digits only",
        without="the mtproto collector is disabled",
    ),
    SecretSpec(
        name="telegram_api_hash",
        purpose="api_hash of the Telegram application used by the MTProto collector",
        kind="user",
        required_in=_NOWHERE,
        rotation="Fixed per Telegram application; change with `invoke secrets.from-env --force`, restart mtproto.",
        pattern=re.compile(r"[0-9a-fA-F]{32}", re.ASCII),
        rule="32 hexadecimal characters",
        without="the mtproto collector is disabled",
    ),
    SecretSpec(
        name="telegram_session",
        purpose="Telethon StringSession of the account the MTProto collector logs in as",
        kind="user",
        required_in=_NOWHERE,
        rotation="Log in again for a new StringSession, `invoke secrets.from-env --force`, restart mtproto, "
        "then end the old session in Telegram.",
        pattern=_PRINTABLE,
        rule=_PRINTABLE_RULE,
        without="the mtproto collector is disabled",
    ),
)
BY_NAME: Mapping[str, SecretSpec] = MappingProxyType({spec.name: spec for spec in SECRETS})


def swarm_secret_names() -> tuple[str, ...]:
    """Return the name of every secret, as `docker secret create NAME secrets/NAME` would use it."""
    return tuple(spec.name for spec in SECRETS)


def get_spec(name: str) -> SecretSpec:
    """Return the registry entry for `name`, or refuse an unknown name with the list of known ones."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise BadInput(f"unknown secret {name!r}; known secrets: {', '.join(BY_NAME)}") from None


def consumer_uid(spec: SecretSpec) -> int:
    """Return the uid that must own the file: the one uid every consumer of the secret runs as."""
    uids = {SERVICE_UIDS[service] for service in spec.consumers}
    if len(uids) != 1:
        # A 0600 file can be read by one uid only; this needs a copy per uid, not a guess.
        raise OpsError(f"consumers of {spec.name} run as different uids {sorted(uids)}; a 0600 file serves only one")
    return uids.pop()


def check_env(env: str) -> None:
    """Refuse an environment the stack does not have."""
    if env not in model.ENVIRONMENTS:
        raise BadInput(f"unknown environment {env!r}; use one of: {', '.join(model.ENVIRONMENTS)}")
