"""Accepted exceptions (invoke.yaml's ops.audit_exceptions) and the report that applies them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import BadInput
from ..model import ENVIRONMENTS
from .containers import NEVER_EXCEPTED, RESULTS, Finding

# --- exceptions and reports -------------------------------------------------------------


@dataclass(frozen=True)
class AuditException:
    check: str
    service: str  # a service, a Dockerfile path or "*"
    env: str  # an environment or "*"; image findings belong to no environment, so only "*" matches them
    reason: str

    def covers(self, finding: Finding, env: str) -> bool:
        return self.check == finding.check and self.service in ("*", finding.target) and self.env in ("*", env)


def parse_exceptions(raw: Iterable[Any]) -> list[AuditException]:
    """The config's `audit_exceptions`: each says which check, where, and why."""
    if not isinstance(raw, list | tuple):
        raise BadInput("ops.audit_exceptions must be a list of {check, service, env, reason}")
    parsed = []
    for number, item in enumerate(raw, 1):
        if not isinstance(item, Mapping):
            raise BadInput(f"audit exception {number} must be a mapping of check, service, env and reason")
        check, service, env = (str(item.get(k) or "").strip() for k in ("check", "service", "env"))
        where = f"audit exception {number} ({check or '?'} for {service or '?'})"
        if not check or not service:
            raise BadInput(f'{where} needs `check` and `service` ("*" for every service)')
        if not str(item.get("reason") or "").strip():
            raise BadInput(f"{where} has no reason; every exception must say why it is acceptable")
        if env not in ("", "*", *ENVIRONMENTS, "swarm", "k8s"):
            raise BadInput(f"{where}: unknown env {env!r}; use *, {', '.join(ENVIRONMENTS)}, swarm or k8s")
        if check in NEVER_EXCEPTED:
            raise BadInput(f"{where}: {check} can never be excepted")
        parsed.append(AuditException(check, service, env or "*", str(item["reason"]).strip()))
    return parsed


@dataclass(frozen=True)
class Report:
    """One environment's findings (or the images'), exceptions applied."""

    name: str
    findings: list[Finding]

    def count(self, result: str) -> int:
        return sum(f.result == result for f in self.findings)

    @property
    def failed(self) -> bool:
        return self.count("FAIL") > 0

    def summary(self) -> str:
        return (
            f"{self.name}: {self.count('pass')} passed, {self.count('FAIL')} failed, {self.count('excepted')} excepted"
        )

    def to_dict(self) -> dict[str, Any]:
        counts = dict(zip(("passed", "failed", "excepted"), map(self.count, RESULTS), strict=True))
        return {"name": self.name, **counts, "findings": [asdict(f) for f in self.findings]}


def make_report(name: str, findings: Iterable[Finding], exceptions: Iterable[AuditException]) -> Report:
    """Mark each finding pass, FAIL or excepted; `name` is the environment (or "images")."""
    exceptions = list(exceptions)
    marked = []
    for f in findings:
        match = None if f.ok else next((e for e in exceptions if e.covers(f, name)), None)
        result = "pass" if f.ok else "excepted" if match else "FAIL"
        marked.append(Finding(f.check, f.target, f.ok, f.detail, result, match.reason if match else ""))
    return Report(name, marked)
