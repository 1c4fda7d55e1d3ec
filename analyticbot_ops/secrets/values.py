"""What a secret's value may be, and how one is made: placeholder and strength checks, the format rules of the
registry, random generation, and the derived secrets (the Redis ACL file, the bot's API token).

No value ever appears in what these return: problems name the rule a value broke, never the value.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from secrets import token_urlsafe
from types import MappingProxyType, ModuleType

from ..errors import BadInput, OpsError
from ..paths import SERVICES_DIR
from .registry import MONITORING_USER, REDIS_ADMIN_RULES, REDIS_APP_RULES, REDIS_MONITOR_RULES, get_spec


def _load_placeholders() -> ModuleType:
    """The services' own rule, loaded from its file: it lives in their package (which the toolkit does not
    install) and is standard library only, so both sides run the very same code."""
    path = SERVICES_DIR / "common" / "analyticbot_common" / "placeholders.py"
    spec = importlib.util.spec_from_file_location("analyticbot_ops._placeholders", path)
    if spec is None or spec.loader is None:
        raise OpsError(f"{path} is missing; the checkout is incomplete")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Tell whether a value is a template's stand-in (change_me, your_token, xxx, <token>...) rather than a secret.
is_placeholder: Callable[[str], bool] = _load_placeholders().is_placeholder


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


def redis_acl_line(password: str, admin_password: str, monitor_password: str) -> str:
    """Return the Redis ACL file: the sha256 of each password, so the file never holds one in clear.

    Unauthenticated connections are the `default` user, allowed PING only: the
    healthcheck needs no secret on a command line. The API is user `analyticbot`,
    with only the commands and keys its cache uses (REDIS_APP_RULES); `ops` is the toolkit's;
    `monitor` is the exporter's, with no keys and only the commands that read the server's state."""
    app, admin, monitor = (hashlib.sha256(p.encode()).hexdigest() for p in (password, admin_password, monitor_password))
    return (
        "user default on nopass resetchannels -@all +ping\n"
        f"user analyticbot on #{app} {REDIS_APP_RULES}\n"
        f"user ops on #{admin} {REDIS_ADMIN_RULES}\n"
        f"user monitor on #{monitor} {REDIS_MONITOR_RULES}\n"
    )


def redis_monitor_auth(password: str) -> str:
    """The Redis exporter's --redis.password-file: JSON from the address it scrapes to the password (a flag or
    an environment variable would show the password in `ps` or `docker inspect`)."""
    return json.dumps({"redis://redis:6379": password}) + "\n"


# bcrypt's cost: Prometheus and Alertmanager check it on every request, their own scrapes and healthchecks
# included, so a high cost is paid every few seconds; 10 is what their documentation's examples use.
WEB_CONFIG_BCRYPT_ROUNDS = 10


def prometheus_web_config(password: str, rounds: int = WEB_CONFIG_BCRYPT_ROUNDS) -> str:
    """The web config file of Prometheus and Alertmanager: basic auth for MONITORING_USER, as a bcrypt hash."""
    import bcrypt  # needed only where the file is written or checked

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()
    return f"basic_auth_users:\n  {MONITORING_USER}: '{hashed}'\n"


def pgbackrest_cipher_conf(key: str, repos: tuple[int, ...]) -> str:
    """A pgBackRest include file (conf.d) with the cipher key of each repository: a setting in a file, since
    pgBackRest reads none from a file of its own and the environment would show in `docker inspect`. The
    repository host's lists only its own repository (an index it does not hold is refused there)."""
    return "[global]\n" + "".join(f"repo{repo}-cipher-pass={key}\n" for repo in repos)


# The repositories each side of the backup path holds the key of (compose/docker-compose.backup.yml).
PGBACKREST_CONF_REPOS: Mapping[str, tuple[int, ...]] = MappingProxyType(
    {"pgbackrest_db_conf": (1, 2), "pgbackrest_repo_conf": (2,)}
)


@dataclass(frozen=True)
class Derivation:
    """How a derived secret is made from its sources (by name), and what is wrong with a stored one."""

    derive: Callable[[Mapping[str, str]], str]
    problems: Callable[[str, Mapping[str, str]], tuple[str, ...]]  # (stored value, source values)


def _acl(sources: Mapping[str, str]) -> str:
    return redis_acl_line(sources["redis_password"], sources["redis_admin_password"], sources["redis_monitor_password"])


def _acl_problems(value: str, sources: Mapping[str, str]) -> tuple[str, ...]:
    if value.strip() == _acl(sources).strip():
        return ()
    return ("does not match the current passwords of the Redis users",)


def _monitor_auth(sources: Mapping[str, str]) -> str:
    return redis_monitor_auth(sources["redis_monitor_password"])


def _monitor_auth_problems(value: str, sources: Mapping[str, str]) -> tuple[str, ...]:
    if value.strip() == _monitor_auth(sources).strip():
        return ()
    return ("does not hold the current redis_monitor_password",)


def _web_config(sources: Mapping[str, str]) -> str:
    return prometheus_web_config(sources["prometheus_password"])


def _web_config_problems(value: str, sources: Mapping[str, str]) -> tuple[str, ...]:
    import bcrypt

    hashed = value.rsplit("'", 2)[-2] if value.count("'") >= 2 else ""
    try:
        if bcrypt.checkpw(sources["prometheus_password"].encode(), hashed.encode()):
            return ()
    except ValueError:  # not a bcrypt hash at all
        pass
    return ("does not hold the hash of the current prometheus_password",)


def _read_token(sources: Mapping[str, str]) -> str:
    from .. import tokens  # PyJWT is needed only where a token is minted

    return tokens.service_token(sources["jwt_secret_key"], subject="bot")


def _read_token_problems(value: str, sources: Mapping[str, str]) -> tuple[str, ...]:
    from .. import tokens

    return tokens.check_service_token(value, sources["jwt_secret_key"])


def _cipher_conf(name: str) -> Derivation:
    def derive(sources: Mapping[str, str]) -> str:
        return pgbackrest_cipher_conf(sources["pgbackrest_cipher_pass"], PGBACKREST_CONF_REPOS[name])

    def problems(value: str, sources: Mapping[str, str]) -> tuple[str, ...]:
        return () if value.strip() == derive(sources).strip() else ("does not hold the current pgbackrest_cipher_pass",)

    return Derivation(derive, problems)


DERIVATIONS: Mapping[str, Derivation] = MappingProxyType(
    {
        **{name: _cipher_conf(name) for name in PGBACKREST_CONF_REPOS},
        "redis_acl": Derivation(_acl, _acl_problems),
        "api_read_token": Derivation(_read_token, _read_token_problems),
        "redis_monitor_auth": Derivation(_monitor_auth, _monitor_auth_problems),
        "prometheus_web_config": Derivation(_web_config, _web_config_problems),
    }
)


def decode(name: str, data: bytes) -> str:
    """Return the value a secret file holds: its UTF-8 text without the one newline an editor adds at the end."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise BadInput(f"secret {name} is not UTF-8 text") from None
    return text.removesuffix("\n").removesuffix("\r")
