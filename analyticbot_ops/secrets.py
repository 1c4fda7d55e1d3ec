"""The secrets lifecycle: which secrets exist, and the files under `secrets/` that Docker serves them from.

This module owns the registry of every secret (`SECRETS`), their validation, the files in the secrets folder
(create, back up, replace, check, list, read) and the order of steps that rotates a secret on a live stack.
It never prints: each operation returns dataclasses that the Invoke tasks render.

Design notes:

- The files are Docker Compose *file* secrets: compose bind-mounts `secrets/NAME` at `/run/secrets/NAME`. A bind mount
  keeps the host's owner and mode, so each file is 0600 and, when we run as root, owned by the uid of the container
  that reads it (`SERVICE_UIDS`). The folder is 0700 because containers reach a file through its mount, never
  through the folder.
- Names are Swarm-compatible (lowercase, digits, underscores, under 64 characters), so the same files can later be
  served by `docker secret create NAME secrets/NAME`; `swarm_secret_names()` lists them.
- Nothing is ever overwritten silently. New files appear atomically and only if absent (a hard link of a finished
  temporary file); replacing needs `force`, and the old value is first copied to `secrets/.backup/NAME.<UTC time>`.
  A replacement is a new inode swapped in with `os.replace`, so a running container keeps reading the old value
  until it is restarted, and never sees half a file.
- Every check runs before the first write: a batch is validated as a whole and then written as a whole.
- No secret value ever appears in an error message or a report; messages name the secret and the rule it broke.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import getpass
import hashlib
import hmac
import io
import os
import re
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from secrets import token_bytes, token_urlsafe
from types import MappingProxyType
from typing import Literal, Protocol

from dotenv.parser import parse_stream

from .errors import BadInput, OpsError
from .files import fsync_dir
from .paths import SECRETS_DIR

Kind = Literal["generated", "user", "derived"]
Outcome = Literal["created", "kept", "invalid", "missing"]

ENVS: tuple[str, ...] = ("dev", "staging", "prod")
APP_UID = 10001
# What the API's Redis user may do: the summary cache (GET/SET/DEL on summary:*), the health probe's write
# (SET on health:*, which is how a Redis that refuses writes is noticed), PING, and naming its connection.
# Everything else is refused, -@dangerous (CONFIG, FLUSHALL, SHUTDOWN, KEYS, ...) first of all.
REDIS_APP_RULES = "resetkeys ~summary:* ~health:* resetchannels -@all -@dangerous +get +set +del +ping +client|setname"
# The toolkit's own user, for ACL changes (rotation) through `docker exec`; its password is a secret that no
# container reads, so the API cannot become it.
REDIS_ADMIN_RULES = "~* &* +@all"
# One uid per service, all the same today; a table so that one service can move to its own uid later.
# Each container runs as uid:gid N:N, so the gid of a secret file is the uid too.
SERVICE_UIDS: Mapping[str, int] = MappingProxyType(
    {
        "api": APP_UID,
        "bot": APP_UID,
        "mtproto": APP_UID,
        "migrate": APP_UID,
        "postgres": APP_UID,
        "redis": APP_UID,
        "proxy": APP_UID,
    }
)
BACKUP_DIR_NAME = ".backup"
DEFAULT_DB_ROLE = "analyticbot"
DEFAULT_HEALTH_TIMEOUT = 120.0
FILE_MODE = 0o600
DIR_MODE = 0o700
# Files in the secrets folder that belong to the repository, not to the registry.
# The PostgreSQL role whose password each secret is (the migrate job creates the runtime ones).
POSTGRES_ROLES: Mapping[str, str] = MappingProxyType(
    {
        "postgres_password": "analyticbot",
        "postgres_api_password": "analyticbot_api",
        "postgres_collector_password": "analyticbot_collector",
    }
)
# The Redis ACL user whose password each secret is, for live rotation.
REDIS_USERS: Mapping[str, str] = MappingProxyType({"redis_password": "analyticbot", "redis_admin_password": "ops"})
_REPO_FILES = frozenset({"README.md", ".gitignore"})
_PROMPT_ATTEMPTS = 3
# PostgreSQL's own defaults for the SCRAM verifiers it makes itself.
_SCRAM_ITERATIONS = 4096
_SCRAM_SALT_BYTES = 16


@dataclass(frozen=True)
class SecretSpec:
    """One secret: what it is for, where it comes from, who reads it, and how it is checked and rotated."""

    name: str
    purpose: str
    kind: Kind
    required_in: frozenset[str]
    consumers: tuple[str, ...]
    rotation: str
    pattern: re.Pattern[str]
    rule: str  # the pattern in words, for messages
    strength_checked: bool = False
    generate_bytes: int = 0
    derived_from: tuple[str, ...] = ()  # the secrets a derived one is made from
    # Services that must restart to pick up a new value; the data services read theirs only at first start.
    restart_on_rotate: tuple[str, ...] = ()
    without: str = ""  # what runs differently when an optional secret is absent

    @property
    def env_var(self) -> str:
        """The variable that supplies this secret in an env file or the environment."""
        return self.name.upper()

    def required(self, env: str) -> bool:
        """Whether a deployment to `env` needs this secret."""
        return env in self.required_in


_EVERYWHERE = frozenset(ENVS)
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
        consumers=("postgres", "migrate"),
        rotation="`invoke secrets-rotate postgres_password`: ALTER ROLE, swap the file (the migrate job reads it "
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
        consumers=("api", "migrate"),
        rotation="`invoke secrets-rotate postgres_api_password`: ALTER ROLE, swap the file, restart api.",
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
        consumers=("mtproto", "migrate"),
        rotation="`invoke secrets-rotate postgres_collector_password`: ALTER ROLE, swap the file, restart mtproto.",
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
        consumers=("api",),
        rotation="`invoke secrets-rotate redis_password`: set it in the live Redis ACL, swap it and redis_acl, "
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
        # No container reads it: Redis gets only its hash, through redis_acl.
        consumers=("redis",),
        rotation="`invoke secrets-rotate redis_admin_password`: set it in the live Redis ACL, swap it and redis_acl.",
        pattern=_PRINTABLE,
        rule=_PRINTABLE_RULE,
        strength_checked=True,
        generate_bytes=32,
    ),
    SecretSpec(
        name="redis_acl",
        purpose="Redis ACL file holding the sha256 of redis_password and redis_admin_password, never a password",
        kind="derived",
        required_in=_EVERYWHERE,
        consumers=("redis",),
        rotation="Derived: rewritten whenever redis_password or redis_admin_password is created or rotated.",
        pattern=re.compile(
            r"user default on nopass resetchannels -@all \+ping\n"
            r"user analyticbot on #[0-9a-f]{64} " + re.escape(REDIS_APP_RULES) + r"\n"
            r"user ops on #[0-9a-f]{64} " + re.escape(REDIS_ADMIN_RULES),
            re.ASCII,
        ),
        rule=f"`user default on nopass resetchannels -@all +ping`, `user analyticbot on #<sha256 hex> "
        f"{REDIS_APP_RULES}`, `user ops on #<sha256 hex> {REDIS_ADMIN_RULES}`",
        derived_from=("redis_password", "redis_admin_password"),
    ),
    SecretSpec(
        name="jwt_secret_key",
        purpose="key that signs the API's JSON Web Tokens",
        kind="generated",
        required_in=_EVERYWHERE,
        consumers=("api",),
        rotation="`invoke secrets-rotate jwt_secret_key`: swap it and api_read_token, restart api and bot; "
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
        consumers=("bot",),
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
        consumers=("bot",),
        rotation="`invoke secrets-rotate telegram_webhook_secret`: swap, restart bot, which sets its webhook again.",
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
        consumers=("bot",),
        rotation="/revoke in @BotFather, then `invoke secrets-from-env --force` with the new BOT_TOKEN; restart bot.",
        # re.ASCII: a bare \d would also accept other scripts' digits.
        pattern=re.compile(r"\d+:[A-Za-z0-9_-]{35}", re.ASCII),
        rule=r"^\d+:[A-Za-z0-9_-]{35}$",
        without="the bot runs degraded",
    ),
    SecretSpec(
        name="stripe_secret_key",
        purpose="Stripe API secret key",
        kind="user",
        required_in=_NOWHERE,
        consumers=("api",),
        rotation="Roll the key in the Stripe dashboard, then `invoke secrets-from-env --force`; restart api.",
        pattern=re.compile(r"sk_(test|live)_[A-Za-z0-9]{16,}", re.ASCII),
        rule="^sk_(test|live)_[A-Za-z0-9]{16,}$",
        without="the api runs without Stripe",
    ),
    SecretSpec(
        name="openai_api_key",
        purpose="OpenAI API key",
        kind="user",
        required_in=_NOWHERE,
        consumers=("api",),
        rotation="Create a new key, `invoke secrets-from-env --force`, restart api, then revoke the old key.",
        pattern=re.compile(r"sk-[A-Za-z0-9_-]{20,}", re.ASCII),
        rule="^sk-[A-Za-z0-9_-]{20,}$",
        without="the api runs without OpenAI",
    ),
    SecretSpec(
        name="telegram_api_id",
        purpose="api_id of the Telegram application (my.telegram.org) used by the MTProto collector",
        kind="user",
        required_in=_NOWHERE,
        consumers=("mtproto",),
        rotation="Fixed per Telegram application; change with `invoke secrets-from-env --force`, restart mtproto.",
        pattern=re.compile(r"[0-9]{1,20}", re.ASCII),
        rule="digits only",
        without="the mtproto collector is disabled",
    ),
    SecretSpec(
        name="telegram_api_hash",
        purpose="api_hash of the Telegram application used by the MTProto collector",
        kind="user",
        required_in=_NOWHERE,
        consumers=("mtproto",),
        rotation="Fixed per Telegram application; change with `invoke secrets-from-env --force`, restart mtproto.",
        pattern=re.compile(r"[0-9a-fA-F]{32}", re.ASCII),
        rule="32 hexadecimal characters",
        without="the mtproto collector is disabled",
    ),
    SecretSpec(
        name="telegram_session",
        purpose="Telethon StringSession of the account the MTProto collector logs in as",
        kind="user",
        required_in=_NOWHERE,
        consumers=("mtproto",),
        rotation="Log in again for a new StringSession, `invoke secrets-from-env --force`, restart mtproto, "
        "then end the old session in Telegram.",
        pattern=_PRINTABLE,
        rule=_PRINTABLE_RULE,
        without="the mtproto collector is disabled",
    ),
)
_BY_NAME: Mapping[str, SecretSpec] = MappingProxyType({spec.name: spec for spec in SECRETS})


def swarm_secret_names() -> tuple[str, ...]:
    """Return the name of every secret, as `docker secret create NAME secrets/NAME` would use it."""
    return tuple(spec.name for spec in SECRETS)


def get_spec(name: str) -> SecretSpec:
    """Return the registry entry for `name`, or refuse an unknown name with the list of known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise BadInput(f"unknown secret {name!r}; known secrets: {', '.join(_BY_NAME)}") from None


def consumer_uid(spec: SecretSpec) -> int:
    """Return the uid that must own the file: the one uid every consumer of the secret runs as."""
    uids = {SERVICE_UIDS[service] for service in spec.consumers}
    if len(uids) != 1:
        # A 0600 file can be read by one uid only; this needs a copy per uid, not a guess.
        raise OpsError(f"consumers of {spec.name} run as different uids {sorted(uids)}; a 0600 file serves only one")
    return uids.pop()


def _check_env(env: str) -> None:
    if env not in ENVS:
        raise BadInput(f"unknown environment {env!r}; use one of: {', '.join(ENVS)}")


# --- validation -----------------------------------------------------------------------------------------------

_PLACEHOLDER_VALUES = frozenset(
    {
        "change_me",
        "changeme",
        "change-me",
        "password",
        "secret",
        "example",
        "placeholder",
        "todo",
        "test",
        "123456",
        "dummy",
        "none",
        "null",
    }
)
_PLACEHOLDER_PARTS = ("change_me", "changeme", "your_", "replace_me")
# Eight x in a row is how templates blank a key ("sk-xxxxxxxx..."); in a random token it is ~1e-11 likely.
_PLACEHOLDER_X_RUN = "x" * 8


def is_placeholder(value: str) -> bool:
    """Tell whether a value is a template's stand-in (change_me, your_token, xxx, <token>...) rather than a secret."""
    folded = value.strip().lower()
    if folded in _PLACEHOLDER_VALUES or any(part in folded for part in _PLACEHOLDER_PARTS):
        return True
    if re.fullmatch(r"x{3,}", folded) or _PLACEHOLDER_X_RUN in folded:
        return True
    if len(folded) >= 3 and len(set(folded)) == 1:  # "000000", "aaaa"
        return True
    return folded.startswith("<") and folded.endswith(">")


def _char_classes(value: str) -> int:
    classes = (
        any(c.islower() for c in value),
        any(c.isupper() for c in value),
        any(c.isdigit() for c in value),
        any(not c.isalnum() for c in value),
    )
    return sum(classes)


def is_strong_password(value: str) -> bool:
    """Tell whether a password is strong enough: 16+ characters of 3 classes, or 24+ characters."""
    return len(value) >= 24 or (len(value) >= 16 and _char_classes(value) >= 3)


def validate_value(name: str, value: str) -> tuple[str, ...]:
    """Return the problems of `value` as the secret `name`, worded without the value; empty when it is valid."""
    spec = get_spec(name)
    if not value:
        return ("is empty",)
    problems: list[str] = []
    if not spec.pattern.fullmatch(value):
        problems.append(f"does not match {spec.rule}")
    if spec.kind != "derived" and is_placeholder(value):
        problems.append("looks like a placeholder")
    if spec.strength_checked and not is_strong_password(value):
        problems.append("is too weak (use 16+ characters from 3 of lower/upper/digit/symbol, or 24+ characters)")
    return tuple(problems)


def generate_value(name: str) -> str:
    """Return a fresh random value for a generated secret (URL-safe base64 of 32 or more random bytes)."""
    spec = get_spec(name)
    if spec.kind != "generated":
        raise BadInput(f"{name} is not a generated secret")
    # Loop so that a random value that happens to look like a placeholder ("your_" inside) is never written.
    while True:
        value = token_urlsafe(spec.generate_bytes)
        if not validate_value(name, value):
            return value


def redis_acl_line(password: str, admin_password: str) -> str:
    """Return the Redis ACL file: the sha256 of each password, so the file never holds one in clear.

    Unauthenticated connections are the `default` user, allowed PING only: the
    healthcheck needs no secret on a command line. The API is user `analyticbot`,
    with only the commands and keys its cache uses (REDIS_APP_RULES); `ops` is the toolkit's."""
    app, admin = (hashlib.sha256(p.encode()).hexdigest() for p in (password, admin_password))
    return (
        "user default on nopass resetchannels -@all +ping\n"
        f"user analyticbot on #{app} {REDIS_APP_RULES}\n"
        f"user ops on #{admin} {REDIS_ADMIN_RULES}\n"
    )


@dataclass(frozen=True)
class Derivation:
    """How a derived secret is made from its sources (by name), and what is wrong with a stored one."""

    derive: Callable[[Mapping[str, str]], str]
    problems: Callable[[str, Mapping[str, str]], tuple[str, ...]]  # (stored value, source values)


def _acl(sources: Mapping[str, str]) -> str:
    return redis_acl_line(sources["redis_password"], sources["redis_admin_password"])


def _acl_problems(value: str, sources: Mapping[str, str]) -> tuple[str, ...]:
    if value.strip() == _acl(sources).strip():
        return ()
    return ("does not match the current redis_password and redis_admin_password",)


def _read_token(sources: Mapping[str, str]) -> str:
    from . import tokens  # PyJWT is needed only where a token is minted

    return tokens.service_token(sources["jwt_secret_key"], subject="bot")


def _read_token_problems(value: str, sources: Mapping[str, str]) -> tuple[str, ...]:
    from . import tokens

    return tokens.check_service_token(value, sources["jwt_secret_key"])


DERIVATIONS: Mapping[str, Derivation] = MappingProxyType(
    {
        "redis_acl": Derivation(_acl, _acl_problems),
        "api_read_token": Derivation(_read_token, _read_token_problems),
    }
)


# --- files ----------------------------------------------------------------------------------------------------


def _dir_writable(directory: Path) -> bool:
    if not os.access(directory, os.W_OK | os.X_OK):
        return False
    if os.geteuid() == 0:
        # Root passes os.access whatever the mode says: honour an owner who made the folder read-only on purpose.
        return stat.S_IMODE(directory.stat().st_mode) & (stat.S_IWUSR | stat.S_IXUSR) == stat.S_IWUSR | stat.S_IXUSR
    return True


def _check_writable(secrets_dir: Path) -> None:
    """Refuse, before anything is written, a secrets folder (or backup folder) that cannot be written."""
    target = secrets_dir
    while not target.exists():  # a missing folder is created in its nearest existing ancestor
        if target.is_symlink():
            raise BadInput(f"{target} is a dangling symlink; remove it or point it at a folder")
        target = target.parent
    if not target.is_dir():
        raise BadInput(f"{target} is not a folder; the secrets folder must be one")
    if not _dir_writable(target):
        raise BadInput(f"secrets folder {target} is not writable; fix its permissions (mode 0700, owned by you)")
    backups = secrets_dir / BACKUP_DIR_NAME
    if backups.is_symlink() or (backups.exists() and not backups.is_dir()):
        raise BadInput(f"{backups} must be a plain folder (not a symlink or a file); move it away")
    if backups.is_dir() and not _dir_writable(backups):
        raise BadInput(f"backup folder {backups} is not writable; fix its permissions (mode 0700)")


def _prepare_dir(directory: Path) -> None:
    directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if stat.S_IMODE(directory.stat().st_mode) != DIR_MODE:
        directory.chmod(DIR_MODE)  # tightening only: nobody but the owner has business in here


def _secret_path(secrets_dir: Path, name: str) -> Path | None:
    """Return the path of an existing secret file, None when absent; refuse anything that is not a safe file."""
    path = secrets_dir / name
    if not os.path.lexists(path):
        return None
    if path.is_symlink():
        target = path.resolve()
        root = secrets_dir.resolve()
        if not target.is_relative_to(root):
            raise BadInput(f"{path} is a symlink to {target}, outside {root}; refusing to use it")
        if not target.exists():
            raise BadInput(f"{path} is a dangling symlink; remove it")
    if path.is_dir():
        raise BadInput(f"{path} is a directory, not a secret file; remove it")
    if not path.is_file():
        raise BadInput(f"{path} is not a regular file; remove it")
    return path


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}") from None


def _decode(name: str, data: bytes) -> str:
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise BadInput(f"secret {name} is not UTF-8 text") from None
    # Editors add one newline at the end of a file; the value is what comes before it.
    return text.removesuffix("\n").removesuffix("\r")


def _owner(spec: SecretSpec) -> int | None:
    """Return the uid to chown a new file to, or None when we are not root and so cannot give files away."""
    return consumer_uid(spec) if os.geteuid() == 0 else None


def _write_temp(directory: Path, name: str, content: bytes, owner: int | None) -> Path:
    """Write `content` to a new 0600 temporary file next to its destination, flushed to disk."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp uses 0600 already; this also survives an odd umask
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        if owner is not None:
            os.chown(tmp, owner, owner)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _create_exclusive(path: Path, content: bytes, owner: int | None) -> None:
    """Create `path` with `content` only if nothing is there: the file appears complete or not at all."""
    tmp = _write_temp(path.parent, path.name, content, owner)
    try:
        os.link(tmp, path)  # like O_EXCL: fails if anything appeared at `path` meanwhile
    except FileExistsError:
        raise BadInput(f"{path} appeared while writing; it was left as it is") from None
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def _replace_atomic(path: Path, content: bytes, owner: int | None) -> None:
    """Replace `path` with `content` in one step: readers see the old file or the new one, never a mix."""
    tmp = _write_temp(path.parent, path.name, content, owner)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _backup(secrets_dir: Path, name: str, content: bytes) -> Path:
    """Copy an old value to `.backup/NAME.<UTC time>` (0600, folder 0700) and return where it went."""
    backups = secrets_dir / BACKUP_DIR_NAME
    _prepare_dir(backups)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for attempt in range(1, 1000):
        candidate = backups / (f"{name}.{stamp}" if attempt == 1 else f"{name}.{stamp}-{attempt}")
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
        except FileExistsError:
            continue  # two backups in one second: keep both
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), FILE_MODE)
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        fsync_dir(backups)
        return candidate
    raise OpsError(f"too many backups of {name} in one second in {backups}")


@dataclass(frozen=True)
class _Write:
    spec: SecretSpec
    content: bytes
    old: bytes | None  # the value being replaced; None when the file is new


def _apply(secrets_dir: Path, writes: Iterable[_Write]) -> dict[str, Path]:
    """Write a validated batch; undo what was done if a write fails. Return the backup of each replaced secret."""
    writes = list(writes)
    if not writes:
        return {}
    _prepare_dir(secrets_dir)
    backups: dict[str, Path] = {}
    done: list[_Write] = []
    try:
        for write in writes:
            path = secrets_dir / write.spec.name
            owner = _owner(write.spec)
            if write.old is None:
                _create_exclusive(path, write.content, owner)
            else:
                if write.old:  # an empty placeholder holds nothing worth a backup
                    backups[write.spec.name] = _backup(secrets_dir, write.spec.name, write.old)
                _replace_atomic(path, write.content, owner)
            done.append(write)
    except (OSError, OpsError) as exc:
        undone = _undo_writes(secrets_dir, done)
        if isinstance(exc, OpsError) and undone:
            raise
        cause = exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)
        outcome = "what was written was undone" if undone else "undoing failed: check the folder with secrets-check"
        raise OpsError(f"writing secrets failed ({cause}); {outcome}") from None
    return backups


def _undo_writes(secrets_dir: Path, done: list[_Write]) -> bool:
    """Remove created files and put replaced values back; False when some of it failed."""
    ok = True
    for write in reversed(done):
        path = secrets_dir / write.spec.name
        try:
            if write.old is None:
                path.unlink(missing_ok=True)
            else:
                _replace_atomic(path, write.old, _owner(write.spec))
        except OSError:
            ok = False
    return ok


# --- batches: init and from-env ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecretOutcome:
    """What a batch did with one secret: `created`, `kept`, `invalid` or `missing`, and why."""

    name: str
    status: Outcome
    detail: str
    backup: Path | None = None  # where the replaced value went, when `force` replaced one


@dataclass(frozen=True)
class ApplyReport:
    """The result of secrets-init or secrets-from-env: one outcome per secret, in registry order."""

    env: str
    secrets_dir: Path
    outcomes: tuple[SecretOutcome, ...]

    def outcome(self, name: str) -> SecretOutcome:
        """Return the outcome of the secret `name`."""
        return next(o for o in self.outcomes if o.name == name)


class SecretsRejected(BadInput):
    """A batch refused because values are invalid or required ones are missing; nothing was written."""

    def __init__(self, message: str, outcomes: tuple[SecretOutcome, ...]) -> None:
        super().__init__(message)
        self.outcomes = outcomes


# Replacing these on disk does not change what the running data service holds.
_REPLACE_NOTES = {
    "postgres_password": "an initialised database keeps its old password: use `invoke secrets-rotate` on a live stack",
}


def _plan(
    env: str, secrets_dir: Path, supplied: Mapping[str, str], force: bool
) -> tuple[tuple[SecretOutcome, ...], list[_Write]]:
    """Decide, without writing, what happens to each secret given the supplied values."""
    outcomes: dict[str, SecretOutcome] = {}
    writes: list[_Write] = []
    for spec in SECRETS:
        if spec.kind == "derived":
            continue
        path = _secret_path(secrets_dir, spec.name)
        current = _decode(spec.name, _read_bytes(path)) if path else None
        value = supplied.get(spec.name)
        if current == "" and spec.kind == "user":
            # An empty placeholder (see ensure_optional_placeholders) is "not set": a value may fill it.
            if value is not None and not validate_value(spec.name, value):
                writes.append(_Write(spec, value.encode(), b""))
                outcomes[spec.name] = SecretOutcome(spec.name, "created", "from input (was an empty placeholder)")
                continue
            current = None
        if current is not None and (value is None or value == current or not force):
            if value is None or value == current:
                detail = "already present"
            else:
                detail = "already present; the supplied value differs and was ignored (use --force to replace it)"
            outcomes[spec.name] = SecretOutcome(spec.name, "kept", detail)
        elif value is not None:
            problems = validate_value(spec.name, value)
            if problems:
                outcomes[spec.name] = SecretOutcome(spec.name, "invalid", "; ".join(problems))
            else:
                old = None if path is None else _read_bytes(path)
                detail = "from input" if old is None else "replaced; old value backed up"
                if old is not None and spec.name in _REPLACE_NOTES:
                    detail += f" ({_REPLACE_NOTES[spec.name]})"
                writes.append(_Write(spec, value.encode(), old))
                outcomes[spec.name] = SecretOutcome(spec.name, "created", detail)
        elif spec.kind == "generated":
            writes.append(_Write(spec, generate_value(spec.name).encode(), None))
            outcomes[spec.name] = SecretOutcome(spec.name, "created", "generated")
        else:
            detail = f"required in {env}" if spec.required(env) else f"optional: {spec.without}"
            outcomes[spec.name] = SecretOutcome(spec.name, "missing", detail)
    for spec in SECRETS:
        if spec.kind == "derived":
            outcomes[spec.name], derived = _plan_derived(spec, secrets_dir, writes)
            writes.extend(derived)
    return tuple(outcomes[spec.name] for spec in SECRETS), writes


def _plan_derived(spec: SecretSpec, secrets_dir: Path, writes: list[_Write]) -> tuple[SecretOutcome, list[_Write]]:
    """Derive a file from its sources: rewritten when a source is written now, or when the stored one is
    outdated; created when only it is absent."""
    derivation = DERIVATIONS[spec.name]
    path = _secret_path(secrets_dir, spec.name)
    old = _read_bytes(path) if path else None
    fresh = {w.spec.name: w.content.decode() for w in writes if w.spec.name in spec.derived_from}
    sources: dict[str, str] = {}
    for name in spec.derived_from:
        if name in fresh:
            sources[name] = fresh[name]
            continue
        source_path = _secret_path(secrets_dir, name)
        if source_path is None:
            if old is not None:
                return SecretOutcome(spec.name, "kept", "already present"), []
            return SecretOutcome(spec.name, "missing", f"{name} is missing"), []
        sources[name] = _decode(name, _read_bytes(source_path))
    content = derivation.derive(sources).encode()
    named = " and ".join(spec.derived_from)
    if fresh:
        detail = f"derived from the new {' and '.join(fresh)}"
        return SecretOutcome(spec.name, "created", detail), [_Write(spec, content, old)]
    if old is None:
        return SecretOutcome(spec.name, "created", f"derived from {named}"), [_Write(spec, content, None)]
    current = old.decode(errors="replace").strip()
    if spec.pattern.fullmatch(current) and not derivation.problems(current, sources):
        return SecretOutcome(spec.name, "kept", "already present"), []
    # Derived files hold nothing a person chose: an outdated one (older ACL rules, a token near its end)
    # is made again from its sources, the old one backed up like any replaced secret.
    return SecretOutcome(spec.name, "created", f"renewed from {named}"), [_Write(spec, content, old)]


def _refuse_if_bad(env: str, outcomes: tuple[SecretOutcome, ...]) -> None:
    invalid = [f"{o.name} ({o.detail})" for o in outcomes if o.status == "invalid"]
    missing = [o.name for o in outcomes if o.status == "missing" and get_spec(o.name).required(env)]
    parts = []
    if invalid:
        parts.append(f"invalid: {', '.join(invalid)}")
    if missing:
        parts.append(f"missing but required in {env}: {', '.join(missing)}")
    if parts:
        raise SecretsRejected(f"nothing was written; {'; '.join(parts)}", outcomes)


def _finish(env: str, secrets_dir: Path, outcomes: tuple[SecretOutcome, ...], writes: list[_Write]) -> ApplyReport:
    _refuse_if_bad(env, outcomes)
    backups = _apply(secrets_dir, writes)
    final = tuple(
        SecretOutcome(o.name, o.status, o.detail, backups.get(o.name)) if o.name in backups else o for o in outcomes
    )
    return ApplyReport(env, secrets_dir, final)


def _stdin_is_tty() -> bool:
    # Looked up at call time: test runners and wrappers replace sys.stdin after import.
    return sys.stdin is not None and sys.stdin.isatty()


def init_interactive(
    env: str,
    secrets_dir: Path = SECRETS_DIR,
    *,
    prompt: Callable[[str], str] = getpass.getpass,
    is_tty: Callable[[], bool] = _stdin_is_tty,
    force: bool = False,
) -> ApplyReport:
    """Ask for each missing user secret without echo, generate the rest, and write them all or none.

    With `force`, every user secret is asked for and a typed value replaces the present one (after a backup);
    Enter keeps it. Generated secrets are never replaced here: running services hold them, so they change only
    through `rotate`.
    """
    _check_env(env)
    if not is_tty():
        raise BadInput("secrets-init needs a terminal; use `invoke secrets-from-env` with an env file or variables")
    _check_writable(secrets_dir)  # before the user types anything
    supplied: dict[str, str] = {}
    for spec in SECRETS:
        if spec.kind != "user":
            continue
        present = _secret_path(secrets_dir, spec.name) is not None
        if present and not force:
            continue
        value = _ask(spec, env, prompt, present)
        if value is not None:
            supplied[spec.name] = value
    outcomes, writes = _plan(env, secrets_dir, supplied, force)
    return _finish(env, secrets_dir, outcomes, writes)


def _ask(spec: SecretSpec, env: str, prompt: Callable[[str], str], present: bool) -> str | None:
    """Prompt until a valid value (or, where allowed, nothing) is given; None means skip or keep."""
    if present:
        hint = "Enter keeps the current value"
    elif spec.required(env):
        hint = f"required in {env}"
    else:
        hint = f"optional, Enter to skip: {spec.without}"
    note = ""
    for _ in range(_PROMPT_ATTEMPTS):
        try:
            value = prompt(f"{note}{spec.name} - {spec.purpose} ({hint}): ").strip()
        except EOFError:
            raise BadInput(f"input ended while asking for {spec.name}; nothing was written") from None
        if not value:
            if present or not spec.required(env):
                return None
            note = f"{spec.name} is required in {env}. "
            continue
        problems = validate_value(spec.name, value)
        if not problems:
            return value
        note = f"That {spec.name} {'; '.join(problems)}. "
    raise BadInput(f"no valid {spec.name} after {_PROMPT_ATTEMPTS} attempts; nothing was written")


def read_env_file(env_file: Path) -> dict[str, str]:
    """Return the variables of a dotenv file; a malformed line is refused with its line number, never its text."""
    try:
        text = env_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"env file {env_file} not found") from None
    except UnicodeDecodeError:
        raise BadInput(f"env file {env_file} is not UTF-8 text") from None
    except OSError as exc:
        raise BadInput(f"cannot read env file {env_file}: {exc.strerror}") from None
    values: dict[str, str] = {}
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            # The parser marks a binding from before its leading blank lines; count those to name the bad line.
            original = binding.original.string
            leading = original[: len(original) - len(original.lstrip())]
            line = binding.original.line + len(re.findall(r"\r\n|\n|\r", leading))
            raise BadInput(f"{env_file}:{line}: malformed line (expected NAME=value); nothing was written")
        if binding.key is not None and binding.value is not None:
            values[binding.key] = binding.value
    return values


def from_env(
    env: str,
    secrets_dir: Path = SECRETS_DIR,
    *,
    env_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    force: bool = False,
) -> ApplyReport:
    """Write secrets from an env file and/or the environment (which wins), generating missing generated ones.

    Each secret is read from the variable named like it in upper case (POSTGRES_PASSWORD, BOT_TOKEN...); an
    empty value counts as not given. Derived secrets are never read from input. If any value is invalid or a
    required one is missing, SecretsRejected lists them and nothing is written.
    """
    _check_env(env)
    environ = os.environ if environ is None else environ
    from_file = read_env_file(env_file) if env_file is not None else {}
    _check_writable(secrets_dir)
    supplied: dict[str, str] = {}
    for spec in SECRETS:
        if spec.kind == "derived":
            continue
        for source in (environ, from_file):
            value = (source.get(spec.env_var) or "").strip()
            if value:
                supplied[spec.name] = value
                break
    outcomes, writes = _plan(env, secrets_dir, supplied, force)
    return _finish(env, secrets_dir, outcomes, writes)


# --- inspection -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecretStatus:
    """One row of secrets-check: presence, permissions, owner and the quality of the value (never the value)."""

    name: str
    kind: Kind
    required: bool
    present: bool
    mode_ok: bool | None  # file 0600 and folder 0700; None when absent
    readable_by_consumer: str  # "yes", "no", "unknown" (not root: owners cannot be judged) or "-" when absent
    format_ok: bool | None
    strength: str  # "ok", "weak", "n/a" (no strength rule) or "-" when absent
    placeholder: bool | None
    age_days: int | None
    valid: bool | None  # format ok, no placeholder, not weak, consistent with its source
    problems: tuple[str, ...] = ()


def _age_days(mtime: float) -> int:
    return max(0, int((time.time() - mtime) // 86400))


def check(env: str, secrets_dir: Path = SECRETS_DIR) -> list[SecretStatus]:
    """Return one status row per registered secret; a missing secrets folder means every secret is missing."""
    _check_env(env)
    dir_mode = stat.S_IMODE(secrets_dir.stat().st_mode) if secrets_dir.is_dir() else None
    values: dict[str, str] = {}
    rows = []
    for spec in SECRETS:
        row, value = _check_one(spec, env, secrets_dir, dir_mode, values)
        if value is not None:
            values[spec.name] = value
        rows.append(row)
    return rows


def _check_one(
    spec: SecretSpec, env: str, secrets_dir: Path, dir_mode: int | None, values: Mapping[str, str]
) -> tuple[SecretStatus, str | None]:
    """Check one secret file; also return its value so that derived secrets can be compared with it."""
    required = spec.required(env)
    absent = SecretStatus(spec.name, spec.kind, required, False, None, "-", None, "-", None, None, None)
    try:
        path = _secret_path(secrets_dir, spec.name)
    except BadInput as exc:
        return SecretStatus(
            spec.name, spec.kind, required, True, None, "-", None, "-", None, None, False, (str(exc),)
        ), None
    if path is None:
        return absent, None
    info = path.stat()
    problems: list[str] = []
    mode = stat.S_IMODE(info.st_mode)
    if mode != FILE_MODE:
        problems.append(f"file mode {mode:04o}, expected {FILE_MODE:04o}")
    if dir_mode != DIR_MODE:
        problems.append(f"folder mode {dir_mode:04o}, expected {DIR_MODE:04o}")
    uid = consumer_uid(spec)
    if info.st_uid == uid:
        readable = "yes"
    elif os.geteuid() == 0:
        readable = "no"
        problems.append(f"owned by uid {info.st_uid}, but {', '.join(spec.consumers)} run as uid {uid}")
    else:
        readable = "unknown"
    mode_ok = mode == FILE_MODE and dir_mode == DIR_MODE
    age = _age_days(info.st_mtime)
    try:
        value = _decode(spec.name, _read_bytes(path))
    except BadInput as exc:
        problems.append(str(exc))
        row = SecretStatus(
            spec.name, spec.kind, required, True, mode_ok, readable, False, "-", None, age, False, tuple(problems)
        )
        return row, None
    if not value and spec.kind == "user" and not required:
        # An empty placeholder for an optional secret means "not set".
        return absent, None
    format_ok = bool(value) and spec.pattern.fullmatch(value) is not None
    if not format_ok:
        problems.append("empty" if not value else f"does not match {spec.rule}")
    placeholder = spec.kind != "derived" and is_placeholder(value)
    if placeholder:
        problems.append("looks like a placeholder")
    strength = "n/a"
    if spec.strength_checked:
        strength = "ok" if is_strong_password(value) else "weak"
        if strength == "weak":
            problems.append("weak")
    consistent = True
    if spec.derived_from and all(name in values for name in spec.derived_from) and format_ok:
        mismatch = DERIVATIONS[spec.name].problems(value.strip(), values)
        consistent = not mismatch
        problems.extend(mismatch)
    valid = format_ok and not placeholder and strength != "weak" and consistent
    row = SecretStatus(
        spec.name,
        spec.kind,
        required,
        True,
        mode_ok,
        readable,
        format_ok,
        strength,
        placeholder,
        age,
        valid,
        tuple(problems),
    )
    return row, value


def check_failed(rows: Iterable[SecretStatus], env: str) -> bool:
    """Tell whether secrets-check should fail: a required secret missing or invalid, or any present one invalid."""
    _check_env(env)
    for row in rows:
        if get_spec(row.name).required(env) and not row.present:
            return True
        if row.present and not row.valid:
            return True
    return False


@dataclass(frozen=True)
class SecretInfo:
    """One file in the secrets folder: name, size, age and who reads it; never the value."""

    name: str
    known: bool  # False for a file the registry does not declare
    size: int
    age_days: int
    consumers: tuple[str, ...]


def list_secrets(secrets_dir: Path = SECRETS_DIR) -> list[SecretInfo]:
    """List the secret files present, registered ones in registry order, then any stray files."""
    if not secrets_dir.is_dir():
        return []
    entries = {
        p.name: p
        for p in secrets_dir.iterdir()
        if p.name not in _REPO_FILES and not p.name.startswith(".") and not p.is_dir()
    }
    order = [spec.name for spec in SECRETS if spec.name in entries]
    order += sorted(name for name in entries if name not in _BY_NAME)
    result = []
    for name in order:
        try:
            info = entries[name].stat()
        except OSError:
            info = entries[name].lstat()  # a dangling symlink: still worth listing
        spec = _BY_NAME.get(name)
        consumers = spec.consumers if spec else ()
        result.append(SecretInfo(name, spec is not None, info.st_size, _age_days(info.st_mtime), consumers))
    return result


def ensure_optional_placeholders(secrets_dir: Path = SECRETS_DIR) -> list[str]:
    """Create an empty file for each absent user-supplied secret, and return their names.

    Compose bind-mounts every declared secret and fails when a source file is
    missing; the services treat an empty secret as not configured (the bot and
    the collector then run in their documented degraded or disabled states)."""
    created = []
    for spec in SECRETS:
        if spec.kind == "user" and _secret_path(secrets_dir, spec.name) is None:
            _check_writable(secrets_dir)
            _prepare_dir(secrets_dir)
            _create_exclusive(secrets_dir / spec.name, b"", _owner(spec))
            created.append(spec.name)
    return created


def read_secret(name: str, secrets_dir: Path = SECRETS_DIR) -> str:
    """Return the value of the secret `name`, without its trailing newline."""
    spec = get_spec(name)
    path = _secret_path(secrets_dir, spec.name)
    if path is None:
        raise BadInput(f"secret {name} is missing; run `invoke secrets-init` or `invoke secrets-from-env`")
    return _decode(name, _read_bytes(path))


# --- rotation ---------------------------------------------------------------------------------------------------


class StackControl(Protocol):
    """What rotation needs from the running stack; the Docker-backed implementation lives with the stack tasks."""

    def exec_postgres_sql(self, sql: str) -> None:
        """Run SQL as the database superuser in the postgres container, fed on stdin (secrets never go in argv)."""

    def redis_acl_setpass(self, user: str, new_password: str) -> None:
        """Set an ACL user's password in the live Redis, without a restart."""

    def restart(self, services: list[str]) -> None:
        """Restart the services, so they mount the secret files again."""

    def wait_healthy(self, services: list[str], timeout: float) -> None:
        """Wait until the services report healthy; raise OpsError on timeout."""


@dataclass(frozen=True)
class RotationResult:
    """A completed rotation: the files swapped, where the old values went, and the services restarted."""

    name: str
    files: tuple[str, ...]
    backups: tuple[Path, ...]
    restarted: tuple[str, ...]


_ROLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}", re.ASCII)


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = _SCRAM_ITERATIONS) -> str:
    """Return PostgreSQL's SCRAM-SHA-256 verifier of `password` (RFC 5803 form), as `\\password` in psql makes it.

    Sending the verifier rather than the password keeps the clear text out of the server's statement logs and
    pg_stat_activity; PostgreSQL stores a pre-hashed password as given.
    """
    salt = token_bytes(_SCRAM_SALT_BYTES) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def alter_role_sql(role: str, password: str) -> str:
    """Return the ALTER ROLE statement that sets `role`'s password, with identifier and literal safely quoted."""
    if not _ROLE_NAME.fullmatch(role):
        raise BadInput(f"invalid database role name {role!r}")
    quoted_role = '"' + role.replace('"', '""') + '"'
    return f"ALTER ROLE {quoted_role} WITH PASSWORD {_quote_literal(scram_verifier(password))};"


def rotate(
    name: str,
    secrets_dir: Path,
    stack: StackControl,
    *,
    role: str | None = None,
    timeout: float = DEFAULT_HEALTH_TIMEOUT,
) -> RotationResult:
    """Replace a generated secret on the live stack, rolling every step back if any step fails.

    postgres_password, postgres_api_password, postgres_collector_password: ALTER ROLE of its role
    (POSTGRES_ROLES, or `role`), back up and swap the file, restart the role's service, wait healthy.
    redis_password: set it in the live ACL, swap redis_password and redis_acl, restart api and bot, wait healthy.
    jwt_secret_key, telegram_webhook_secret: back up and swap the file, restart the consumers, wait healthy.
    """
    spec = get_spec(name)
    if spec.kind == "user":
        raise BadInput(
            f"{name} is supplied by you, not generated: put the new value in the env file and run "
            "`invoke secrets-from-env --force`"
        )
    if spec.kind == "derived":
        raise BadInput(
            f"{name} is derived from {' and '.join(spec.derived_from)}; rotate that: "
            + " or ".join(f"`invoke secrets-rotate {source}`" for source in spec.derived_from)
        )
    role = role or POSTGRES_ROLES.get(name, DEFAULT_DB_ROLE)
    if name in POSTGRES_ROLES:
        alter_role_sql(role, "")  # refuse a bad role name before anything changes
    _check_writable(secrets_dir)
    old = read_secret(name, secrets_dir)
    new = generate_value(name)
    swaps = [(spec, _read_bytes(secrets_dir / name), new.encode())]
    set_live: Callable[[str], None] | None = None
    if name in POSTGRES_ROLES:
        set_live = _postgres_setter(stack, role)
    elif name in REDIS_USERS:
        set_live = functools.partial(stack.redis_acl_setpass, REDIS_USERS[name])
    # Every secret derived from this one is swapped with it (redis_acl, api_read_token).
    for derived in (s for s in SECRETS if name in s.derived_from):
        derive = DERIVATIONS[derived.name].derive
        others = {source: read_secret(source, secrets_dir) for source in derived.derived_from if source != name}
        derived_path = _secret_path(secrets_dir, derived.name)
        old_content = _read_bytes(derived_path) if derived_path else derive({**others, name: old}).encode()
        swaps.append((derived, old_content, derive({**others, name: new}).encode()))
    return _rotate(spec, secrets_dir, stack, timeout, swaps, set_live, old, new)


def _postgres_setter(stack: StackControl, role: str) -> Callable[[str], None]:
    def set_password(password: str) -> None:
        stack.exec_postgres_sql(alter_role_sql(role, password))

    return set_password


def _rotate(
    spec: SecretSpec,
    secrets_dir: Path,
    stack: StackControl,
    timeout: float,
    swaps: list[tuple[SecretSpec, bytes, bytes]],
    set_live: Callable[[str], None] | None,
    old: str,
    new: str,
) -> RotationResult:
    """Run the rotation steps in order, and on any failure (Ctrl-C included) roll back what was done."""
    services = list(spec.restart_on_rotate)
    backups: list[Path] = []
    swapped: list[tuple[SecretSpec, bytes]] = []
    live_set = restarted = False
    try:
        if set_live is not None:
            try:
                set_live(new)
            except BaseException:
                _best_effort(set_live, old)  # the change may have landed before the error; undo it quietly
                raise
            live_set = True
        for swap_spec, old_content, new_content in swaps:
            backups.append(_backup(secrets_dir, swap_spec.name, old_content))
            _replace_atomic(secrets_dir / swap_spec.name, new_content, _owner(swap_spec))
            swapped.append((swap_spec, old_content))
        restarted = True
        if services:  # a secret no container reads (redis_admin_password) restarts nothing
            stack.restart(services)
            stack.wait_healthy(services, timeout)
    except BaseException as exc:  # Ctrl-C too: a half-rotated stack is worse than the interruption
        cause = _describe(exc)
        if not live_set and not swapped:
            raise OpsError(
                _scrub(f"rotation of {spec.name} failed before anything changed: {cause}", old, new)
            ) from None
        live = set_live if live_set else None
        failures = _roll_back(secrets_dir, stack, timeout, services if restarted else [], swapped, live, old)
        if failures:
            where = ", ".join(str(b) for b in backups) or "nowhere (no file was swapped)"
            message = (
                f"rotation of {spec.name} failed: {cause}; rollback incomplete: {'; '.join(failures)}; "
                f"old values are backed up in {where}"
            )
            raise OpsError(_scrub(message, old, new)) from None
        raise OpsError(_scrub(f"rotation of {spec.name} failed and was rolled back: {cause}", old, new)) from None
    return RotationResult(spec.name, tuple(s.name for s, _, _ in swaps), tuple(backups), tuple(services))


def _scrub(message: str, *values: str) -> str:
    """Mask secret values in a message built from other code's errors, which may quote what they were given."""
    for value in values:
        if value:
            message = message.replace(value, "***")
    return message


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return str(exc) or type(exc).__name__


def _best_effort(step: Callable[[str], None], value: str) -> None:
    with contextlib.suppress(Exception):  # the original error is the one worth reporting
        step(value)


def _roll_back(
    secrets_dir: Path,
    stack: StackControl,
    timeout: float,
    services: list[str],
    swapped: list[tuple[SecretSpec, bytes]],
    set_live: Callable[[str], None] | None,
    old: str,
) -> list[str]:
    """Undo a rotation and return the steps that could not be undone.

    The live service gets its old value back first, so that restarted consumers find it; then the files; then the
    consumers restart, but only if the forward path had restarted them.
    """
    failures: list[str] = []
    if set_live is not None:
        try:
            set_live(old)
        except Exception as exc:
            failures.append(f"could not restore the old value in the service ({_describe(exc)})")
    for swap_spec, old_content in reversed(swapped):
        try:
            _replace_atomic(secrets_dir / swap_spec.name, old_content, _owner(swap_spec))
        except OSError as exc:
            failures.append(f"could not restore {swap_spec.name} ({exc.strerror or exc})")
    if services:
        try:
            stack.restart(services)
            stack.wait_healthy(services, timeout)
        except Exception as exc:
            failures.append(f"services not healthy after restoring ({_describe(exc)})")
    return failures
