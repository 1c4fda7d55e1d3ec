"""The secrets lifecycle: which secrets exist, and the files under `secrets/` that Docker serves them from.

The package never prints: each operation returns dataclasses that the Invoke tasks render. One module per concern:

- `registry`: every secret (`SECRETS`), the environments, who reads each (from `model`) and the uid they run as;
- `values`: validation (format, placeholders, strength), generation, and the derived secrets;
- `folder`: the secrets folder on disk (safe paths, owners, create, replace, backups) through `files`;
- `batch`: `secrets.init` and `secrets.from-env`, planned as a whole, then written as a whole;
- `status`: `secrets.check`, `secrets.list`, optional placeholders, `read_secret`;
- `rotation`: rotating a generated secret on a live stack, with rollback.

Design notes:

- Nothing is ever overwritten silently. New files appear atomically and only if absent; replacing needs `force`,
  and the old value is first copied to `secrets/.backup/NAME.<UTC time>`.
- Every check runs before the first write: a batch is validated as a whole and then written as a whole.
- No secret value ever appears in an error message or a report; messages name the secret and the rule it broke.

Callers use the names re-exported here (`secrets.from_env`, `secrets.SECRETS`, ...); tests that replace a private
helper replace it in its own module.
"""

from __future__ import annotations

from .batch import (
    ApplyReport,
    Outcome,
    SecretOutcome,
    SecretsRejected,
    from_env,
    init_interactive,
    read_env_file,
)
from .folder import BACKUP_DIR_NAME, DIR_MODE, FILE_MODE
from .registry import (
    APP_UID,
    DEFAULT_DB_ROLE,
    MONITORING_USER,
    POSTGRES_ROLES,
    REDIS_ADMIN_RULES,
    REDIS_APP_RULES,
    REDIS_MONITOR_RULES,
    REDIS_USERS,
    SECRETS,
    SERVICE_UIDS,
    Kind,
    SecretSpec,
    consumer_uid,
    get_spec,
    swarm_secret_names,
)
from .rotation import (
    DEFAULT_HEALTH_TIMEOUT,
    RotationResult,
    StackControl,
    alter_role_sql,
    rotate,
    scram_verifier,
)
from .status import (
    SecretInfo,
    SecretStatus,
    check,
    check_failed,
    ensure_optional_placeholders,
    list_secrets,
    read_secret,
)
from .values import (
    DERIVATIONS,
    Derivation,
    generate_value,
    is_placeholder,
    is_strong_password,
    prometheus_web_config,
    redis_acl_line,
    validate_value,
)

__all__ = [
    "APP_UID",
    "BACKUP_DIR_NAME",
    "DEFAULT_DB_ROLE",
    "DEFAULT_HEALTH_TIMEOUT",
    "DERIVATIONS",
    "DIR_MODE",
    "FILE_MODE",
    "MONITORING_USER",
    "POSTGRES_ROLES",
    "REDIS_ADMIN_RULES",
    "REDIS_APP_RULES",
    "REDIS_MONITOR_RULES",
    "REDIS_USERS",
    "SECRETS",
    "SERVICE_UIDS",
    "ApplyReport",
    "Derivation",
    "Kind",
    "Outcome",
    "RotationResult",
    "SecretInfo",
    "SecretOutcome",
    "SecretSpec",
    "SecretStatus",
    "SecretsRejected",
    "StackControl",
    "alter_role_sql",
    "check",
    "check_failed",
    "consumer_uid",
    "ensure_optional_placeholders",
    "from_env",
    "generate_value",
    "get_spec",
    "init_interactive",
    "is_placeholder",
    "is_strong_password",
    "list_secrets",
    "prometheus_web_config",
    "read_env_file",
    "read_secret",
    "redis_acl_line",
    "rotate",
    "scram_verifier",
    "swarm_secret_names",
    "validate_value",
]
