"""`stack.restore --to`: the moment to restore to, checked against the clock and the repository's window
before anything is touched."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ..errors import BadInput
from .catalog import Catalog

LATEST = "latest"


@dataclass(frozen=True)
class Target:
    """`latest` (every archived write) or a moment (every write committed at or before it)."""

    moment: dt.datetime | None  # None: latest

    @property
    def latest(self) -> bool:
        return self.moment is None

    def pgbackrest_args(self) -> list[str]:
        """pgBackRest's restore options: to the end of the archive, or to the moment, then promote."""
        if self.moment is None:
            return ["--type=default"]
        stamp = self.moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
        return ["--type=time", f"--target={stamp}", "--target-action=promote"]

    def __str__(self) -> str:
        return LATEST if self.moment is None else self.moment.astimezone(dt.UTC).isoformat(timespec="seconds")


def parse_target(text: str, now: dt.datetime) -> Target:
    """`latest`, or an ISO 8601 time (2026-12-07T16:59:00Z; without an offset it is UTC), not in the future."""
    raw = text.strip()
    if raw.lower() == LATEST:
        return Target(None)
    try:
        moment = dt.datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadInput(
            f"--to must be `latest` or a time like 2026-12-07T16:59:00Z (UTC without an offset), got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    if moment > now:
        raise BadInput(
            f"--to {moment.astimezone(dt.UTC).isoformat(timespec='seconds')} is in the future "
            f"(it is {now.astimezone(dt.UTC).isoformat(timespec='seconds')} now); nothing was touched"
        )
    return Target(moment)


def check_window(target: Target, catalog: Catalog, repo: int) -> None:
    """Refuse a moment the repository cannot reach: before the end of its oldest backup."""
    earliest = catalog.earliest(repo)
    if earliest is None:
        raise BadInput(f"repository {repo} holds no backup yet, so it has nothing to restore; nothing was touched")
    if target.moment is not None and target.moment < earliest:
        raise BadInput(
            f"--to {target} is before the earliest restore point of repository {repo} "
            f"({earliest.isoformat(timespec='seconds')}, the end of its oldest backup); nothing was touched"
        )
