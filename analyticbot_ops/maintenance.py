"""The live steps of a secret rotation (ALTER ROLE, Redis ACL) as `secrets.rotate` asks for them.

Every value that is secret travels on a process's stdin, never in its arguments."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import rollout, secrets
from .backups import DB_NAME, DB_USER
from .compose import Stack, in_service, wait_healthy
from .errors import OpsError

REDIS_CLI = ["redis-cli", "-h", "127.0.0.1"]


@dataclass
class RedisAdmin:
    """Changes a Redis ACL user's password as the toolkit's own `ops` user (the API's user may not), on a
    Compose stack or a swarm alike: `run` feeds redis-cli in the Redis container and returns what it said."""

    secrets_dir: Path
    # The `ops` password Redis holds right now: after a live change and before the file swap (or during a
    # rollback) the file no longer tells.
    live: str | None = None

    def set_password(self, run: Callable[[bytes], str], user: str, new_password: str) -> None:
        admin = self.live or secrets.read_secret("redis_admin_password", self.secrets_dir)
        digest = hashlib.sha256(new_password.encode()).hexdigest()
        # AUTH and the new hash go in on stdin; redis-cli's arguments hold neither.
        out = run(f"AUTH ops {admin}\nACL SETUSER {user} resetpass #{digest}\n".encode())
        if out.split() != ["OK", "OK"]:
            # Say Redis's reason: the first answer that is not AUTH's or the change's OK.
            said = next((line.strip() for line in out.splitlines() if line.strip() not in ("", "OK")), out.strip())
            raise OpsError(f"Redis refused the ACL change ({said or 'no answer'})")
        if user == "ops":
            self.live = new_password


@dataclass
class LiveStack:
    """secrets.StackControl over a running Compose project."""

    stack: Stack
    progress: Callable[[str], None] = lambda _m: None
    _redis: RedisAdmin = field(init=False)

    def __post_init__(self) -> None:
        self._redis = RedisAdmin(Path(self.stack.settings["SECRETS_DIR"]))

    def exec_postgres_sql(self, sql: str) -> None:
        self.progress("  applying the change in PostgreSQL")
        in_service(self.stack, "postgres").run(
            ["psql", "-v", "ON_ERROR_STOP=1", "-U", DB_USER, "-d", DB_NAME, "-q"], sql.encode()
        )

    def redis_acl_setpass(self, user: str, new_password: str) -> None:
        self.progress(f"  applying the change in Redis's live ACL (user {user})")
        self._redis.set_password(
            lambda script: in_service(self.stack, "redis").run(REDIS_CLI, stdin=script).decode(), user, new_password
        )

    def restart(self, services: list[str]) -> None:
        # The HTTP services roll (a new container, mounting the swapped file, beside the old one): no
        # request is dropped while a secret rotates. The others restart. A service this stack does not run
        # (the monitoring overlay's, with it off) reads the new file when it starts.
        services = [s for s in services if s in self.stack.running]
        rolled = [s for s in services if rollout.can_roll(self.stack, s)]
        for service in rolled:
            self.progress(f"  rolling {service}")
            rollout.roll(self.stack, service, progress=self.progress)
        singletons = [s for s in services if s not in rolled]
        if singletons:
            self.progress(f"  restarting {', '.join(singletons)}")
            self.stack.compose("restart", *singletons)

    def wait_healthy(self, services: list[str], timeout: float) -> None:
        wait_healthy(self.stack, [s for s in services if s in self.stack.running], timeout, self.progress)
