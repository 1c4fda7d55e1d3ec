"""Secret rotation on a swarm, in the order and with the rollback of the Compose path (secrets.rotate):
the live change first (ALTER ROLE, the Redis ACL), then the file, then the services. Swarm secrets are
immutable, so "restart the services" is a redeploy: the new value is a new versioned secret, the
services that mount it roll to it (the api start-first, without a gap), and the old version is removed
once no task holds it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..backups import DB_NAME, DB_USER
from ..compose import Stack
from ..errors import OpsError
from ..maintenance import REDIS_CLI, RedisAdmin
from . import deploy
from .lab import Lab, Node

Progress = Callable[[str], None]


@dataclass
class SwarmStack:
    """secrets.StackControl over a stack deployed on a swarm."""

    stack: Stack
    lab: Lab
    progress: Progress = lambda _m: None
    _redis: RedisAdmin = field(init=False)

    def __post_init__(self) -> None:
        self._redis = RedisAdmin(Path(self.stack.settings["SECRETS_DIR"]))

    def _task(self, service: str) -> tuple[Node, str]:
        """The node running the service's task, and its container there."""
        state = deploy.states(self.lab, self.stack.project).get(service)
        if state is None or not state.nodes:
            raise OpsError(f"{service} of {self.stack.project} is not running on {self.lab.name}")
        # A swarm reached through a context: only its manager, where the task must then run.
        node = next((n for n in self.lab.nodes if n.hostname == state.nodes[0]), self.lab.manager)
        label = f"label=com.docker.swarm.service.name={self.stack.project}_{service}"
        found = self.lab.on(node, ["ps", "-q", "--filter", label]).stdout.split()
        if not found:
            raise OpsError(f"{service}'s task on {node.hostname} has no running container")
        return node, found[0]

    def _exec(self, service: str, command: list[str], stdin: bytes) -> str:
        node, container = self._task(service)
        said = self.lab.on(node, ["exec", "-i", container, *command], stdin=stdin, check=False)
        if said.returncode != 0:
            raise OpsError(f"{command[0]} in {service} failed: {(said.stderr or said.stdout).strip()[:200]}")
        return said.stdout

    def exec_postgres_sql(self, sql: str) -> None:
        self.progress("  applying the change in PostgreSQL")
        # The stack's postgres listens on its socket in /tmp (render.py); the socket trusts local users.
        self._exec(
            "postgres",
            ["psql", "-h", "/tmp", "-v", "ON_ERROR_STOP=1", "-U", DB_USER, "-d", DB_NAME, "-q"],
            sql.encode(),
        )

    def redis_acl_setpass(self, user: str, new_password: str) -> None:
        self.progress(f"  applying the change in Redis's live ACL (user {user})")
        self._redis.set_password(lambda script: self._exec("redis", REDIS_CLI, script), user, new_password)

    def restart(self, services: list[str]) -> None:
        # A redeploy: every service that mounts a secret whose content changed rolls to its new version.
        self.progress(f"  redeploying {self.stack.project} with the new secret version ({', '.join(services)})")
        # The stack runs (its checks passed at its deploy): a failing check half-way through would only stop
        # the rotation between its steps.
        deploy.deploy(self.stack, self.lab, progress=self.progress, wait=False, checked=True)

    def wait_healthy(self, services: list[str], timeout: float) -> None:
        # The rotation's own timeout, and only then are the secret versions nothing uses removed.
        deploy.settle(self.stack, self.lab, timeout, self.progress)
