"""What is in the secrets folder, never the values: `secrets.check` (one status row per registered secret,
and whether the check fails), `secrets.list`, the empty placeholders of optional secrets, and reading one value
for the toolkit's own use (`read_secret`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadInput
from ..paths import SECRETS_DIR
from . import folder
from .registry import BY_NAME, SECRETS, Kind, SecretSpec, check_env, consumer_uid, get_spec
from .values import DERIVATIONS, is_placeholder, is_strong_password


@dataclass(frozen=True)
class SecretStatus:
    """One row of secrets.check: presence, permissions, owner and the quality of the value (never the value)."""

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


def check(env: str, secrets_dir: Path = SECRETS_DIR) -> list[SecretStatus]:
    """Return one status row per registered secret; a missing secrets folder means every secret is missing."""
    check_env(env)
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
        path = folder.secret_path(secrets_dir, spec.name)
    except BadInput as exc:
        return SecretStatus(
            spec.name, spec.kind, required, True, None, "-", None, "-", None, None, False, (str(exc),)
        ), None
    if path is None:
        return absent, None
    info = path.stat()
    problems: list[str] = []
    mode = stat.S_IMODE(info.st_mode)
    if mode != folder.FILE_MODE:
        problems.append(f"file mode {mode:04o}, expected {folder.FILE_MODE:04o}")
    if dir_mode != folder.DIR_MODE:
        problems.append(f"folder mode {dir_mode:04o}, expected {folder.DIR_MODE:04o}")
    uid = consumer_uid(spec)
    if info.st_uid == uid:
        readable = "yes"
    elif os.geteuid() == 0:
        readable = "no"
        problems.append(f"owned by uid {info.st_uid}, but {', '.join(spec.consumers)} run as uid {uid}")
    else:
        readable = "unknown"
    mode_ok = mode == folder.FILE_MODE and dir_mode == folder.DIR_MODE
    age = folder.age_days(info.st_mtime)
    try:
        value = folder.read_value(spec.name, path)
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
    """Tell whether secrets.check should fail: a required secret missing or invalid, or any present one invalid."""
    check_env(env)
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
        if p.name not in folder.REPO_FILES and not p.name.startswith(".") and not p.is_dir()
    }
    order = [spec.name for spec in SECRETS if spec.name in entries]
    order += sorted(name for name in entries if name not in BY_NAME)
    result = []
    for name in order:
        try:
            info = entries[name].stat()
        except OSError:
            info = entries[name].lstat()  # a dangling symlink: still worth listing
        spec = BY_NAME.get(name)
        consumers = spec.consumers if spec else ()
        result.append(SecretInfo(name, spec is not None, info.st_size, folder.age_days(info.st_mtime), consumers))
    return result


def ensure_optional_placeholders(secrets_dir: Path = SECRETS_DIR) -> list[str]:
    """Create an empty file for each absent user-supplied secret, and return their names.

    Compose bind-mounts every declared secret and fails when a source file is
    missing; the services treat an empty secret as not configured (the bot and
    the collector then run in their documented degraded or disabled states)."""
    created = []
    for spec in SECRETS:
        if spec.kind == "user" and folder.secret_path(secrets_dir, spec.name) is None:
            folder.check_writable(secrets_dir)
            folder.prepare(secrets_dir)
            folder.create(secrets_dir, spec, b"")
            created.append(spec.name)
    return created


def read_secret(name: str, secrets_dir: Path = SECRETS_DIR) -> str:
    """Return the value of the secret `name`, without its trailing newline."""
    spec = get_spec(name)
    path = folder.secret_path(secrets_dir, spec.name)
    if path is None:
        raise BadInput(f"secret {name} is missing; run `invoke secrets.init` or `invoke secrets.from-env`")
    return folder.read_value(name, path)
