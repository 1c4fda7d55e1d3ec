"""Batches of secrets: `secrets.init` (asks for what a person must supply) and `secrets.from-env` (reads an env
file and the environment). Each generates what is generated and derives what is derived.

A batch is planned as a whole before the first write: if any value is invalid or a required one is missing,
nothing is written (SecretsRejected lists why, never a value). Then it is written as a whole: a write that fails
undoes the ones before it. Present secrets are kept unless `force` replaces them, after a backup.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .. import envfile, files
from ..errors import BadInput, OpsError
from ..paths import SECRETS_DIR
from . import folder
from .registry import SECRETS, SecretSpec, check_env, get_spec
from .values import DERIVATIONS, generate_value, validate_value

Outcome = Literal["created", "kept", "invalid", "missing"]

_PROMPT_ATTEMPTS = 3


@dataclass(frozen=True)
class SecretOutcome:
    """What a batch did with one secret: `created`, `kept`, `invalid` or `missing`, and why."""

    name: str
    status: Outcome
    detail: str
    backup: Path | None = None  # where the replaced value went, when `force` replaced one


@dataclass(frozen=True)
class ApplyReport:
    """The result of secrets.init or secrets.from-env: one outcome per secret, in registry order."""

    env: str
    secrets_dir: Path
    outcomes: tuple[SecretOutcome, ...]

    def outcome(self, name: str) -> SecretOutcome:
        """Return the outcome of the secret `name`."""
        return next(o for o in self.outcomes if o.name == name)


@dataclass(frozen=True)
class _Write:
    """One planned write: a new file (`old` None) or a replaced one."""

    spec: SecretSpec
    content: bytes
    old: bytes | None  # the value being replaced; None when the file is new


class SecretsRejected(BadInput):
    """A batch refused because values are invalid or required ones are missing; nothing was written."""

    def __init__(self, message: str, outcomes: tuple[SecretOutcome, ...]) -> None:
        super().__init__(message)
        self.outcomes = outcomes


# Replacing these on disk does not change what the running data service holds.
_REPLACE_NOTES = {
    "postgres_password": "an initialised database keeps its old password: use `invoke secrets.rotate` on a live stack",
    "pgbackrest_cipher_pass": "the backups already in the repositories need the old key, kept in secrets/.backup/",
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
        path = folder.secret_path(secrets_dir, spec.name)
        current = folder.read_value(spec.name, path) if path else None
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
                old = None if path is None else files.read_bytes(path)
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
    path = folder.secret_path(secrets_dir, spec.name)
    old = files.read_bytes(path) if path else None
    fresh = {w.spec.name: w.content.decode() for w in writes if w.spec.name in spec.derived_from}
    sources: dict[str, str] = {}
    for name in spec.derived_from:
        if name in fresh:
            sources[name] = fresh[name]
            continue
        source_path = folder.secret_path(secrets_dir, name)
        if source_path is None:
            if old is not None:
                return SecretOutcome(spec.name, "kept", "already present"), []
            return SecretOutcome(spec.name, "missing", f"{name} is missing"), []
        sources[name] = folder.read_value(name, source_path)
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
    check_env(env)
    if not is_tty():
        raise BadInput("secrets.init needs a terminal; use `invoke secrets.from-env` with an env file or variables")
    folder.check_writable(secrets_dir)  # before the user types anything
    supplied: dict[str, str] = {}
    for spec in SECRETS:
        if spec.kind != "user":
            continue
        present = folder.secret_path(secrets_dir, spec.name) is not None
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
    """The variables of a dotenv file given to secrets.from-env; a malformed one is refused before any write."""
    try:
        return envfile.read(env_file)
    except BadInput as exc:
        raise BadInput(f"{exc}; nothing was written") from None


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
    check_env(env)
    environ = os.environ if environ is None else environ
    from_file = read_env_file(env_file) if env_file is not None else {}
    folder.check_writable(secrets_dir)
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


# --- writing a batch ------------------------------------------------------------------------------------------


def _apply(secrets_dir: Path, writes: Iterable[_Write]) -> dict[str, Path]:
    """Write a validated batch; undo what was done if a write fails. Return the backup of each replaced secret."""
    writes = list(writes)
    if not writes:
        return {}
    folder.prepare(secrets_dir)
    backups: dict[str, Path] = {}
    done: list[_Write] = []
    try:
        for write in writes:
            if write.old is None:
                folder.create(secrets_dir, write.spec, write.content)
            else:
                if write.old:  # an empty placeholder holds nothing worth a backup
                    backups[write.spec.name] = folder.backup(secrets_dir, write.spec.name, write.old)
                folder.replace(secrets_dir, write.spec, write.content)
            done.append(write)
    except (OSError, OpsError) as exc:
        undone = _undo_writes(secrets_dir, done)
        if isinstance(exc, OpsError) and undone:
            raise
        cause = exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)
        outcome = (
            "what was written was undone" if undone else "undoing failed: check the folder with `invoke secrets.check`"
        )
        raise OpsError(f"writing secrets failed ({cause}); {outcome}") from None
    return backups


def _undo_writes(secrets_dir: Path, done: list[_Write]) -> bool:
    """Remove created files and put replaced values back; False when some of it failed."""
    ok = True
    for write in reversed(done):
        try:
            if write.old is None:
                (secrets_dir / write.spec.name).unlink(missing_ok=True)
            else:
                folder.replace(secrets_dir, write.spec, write.old)
        except OSError:
            ok = False
    return ok
