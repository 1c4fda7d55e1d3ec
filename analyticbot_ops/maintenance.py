"""The live steps of a secret rotation (ALTER ROLE, Redis ACL) as `secrets.rotate` asks for them.

Every value that is secret travels on a process's stdin, never in its arguments."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import rollout, secrets
from .backups import DB_NAME, DB_USER
from .compose import Stack, in_service, wait_healthy
from .errors import OpsError


@dataclass
class LiveStack:
    """secrets.StackControl over a running Compose project."""

    stack: Stack
    progress: Callable[[str], None] = lambda _m: None
    # The `ops` password Redis holds right now: after a live change and before
    # the file swap (or during a rollback) the file no longer tells.
    _redis_admin_live: str | None = None

    def exec_postgres_sql(self, sql: str) -> None:
        self.progress("  applying the change in PostgreSQL")
        in_service(self.stack, "postgres").run(
            ["psql", "-v", "ON_ERROR_STOP=1", "-U", DB_USER, "-d", DB_NAME, "-q"], sql.encode()
        )

    def redis_acl_setpass(self, user: str, new_password: str) -> None:
        self.progress(f"  applying the change in Redis's live ACL (user {user})")
        # The toolkit's own `ops` user makes ACL changes: the API's user may not.
        admin = self._redis_admin_live or secrets.read_secret(
            "redis_admin_password", Path(self.stack.settings["SECRETS_DIR"])
        )
        digest = hashlib.sha256(new_password.encode()).hexdigest()
        # AUTH and the new hash go in on stdin; redis-cli's arguments hold neither.
        script = f"AUTH ops {admin}\nACL SETUSER {user} resetpass #{digest}\n".encode()
        out = in_service(self.stack, "redis").run(["redis-cli", "-h", "127.0.0.1"], stdin=script).decode()
        if out.split() != ["OK", "OK"]:
            # Say Redis's reason: the first answer that is not AUTH's or the change's OK.
            said = next((line.strip() for line in out.splitlines() if line.strip() not in ("", "OK")), out.strip())
            raise OpsError(f"Redis refused the ACL change ({said or 'no answer'})")
        if user == "ops":
            self._redis_admin_live = new_password

    def restart(self, services: list[str]) -> None:
        # The HTTP services roll (a new container, mounting the swapped file, beside the old one): no
        # request is dropped while a secret rotates. The others restart.
        rolled = [s for s in services if rollout.can_roll(self.stack, s)]
        for service in rolled:
            self.progress(f"  rolling {service}")
            rollout.roll(self.stack, service, progress=self.progress)
        singletons = [s for s in services if s not in rolled]
        if singletons:
            self.progress(f"  restarting {', '.join(singletons)}")
            self.stack.compose("restart", *singletons)

    def wait_healthy(self, services: list[str], timeout: float) -> None:
        wait_healthy(self.stack, services, timeout, self.progress)
