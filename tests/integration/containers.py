"""Container recipes for the per-service tests, in testcontainers' style: defaults
in the constructor, readiness proven by a real query (not an open port), and the
container's logs attached when start-up fails. All images are the local builds."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, ClassVar

from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

from analyticbot_ops import model, secrets, tokens

HARDENED = {"read_only": True, "cap_drop": ["ALL"], "security_opt": ["no-new-privileges:true"]}


class StartupFailed(AssertionError):
    pass


def _until(check: Any, timeout: float, container: DockerContainer, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as exc:  # readiness checks fail until they pass
            last = exc
        time.sleep(0.3)
    stdout, stderr = container.get_logs()
    raise StartupFailed(
        f"{what} not ready after {timeout:.0f} s ({last!r}); logs:\n{(stdout + stderr).decode()[-3000:]}"
    )


def _ready_or_stop(container: DockerContainer, check: Any, timeout: float, what: str) -> None:
    """Wait for readiness; a container that never gets there is removed, not left behind."""
    try:
        _until(check, timeout, container, what)
    except BaseException:
        container.stop()
        raise


def address(container: DockerContainer) -> str:
    container.get_wrapped_container().reload()
    networks = container.get_wrapped_container().attrs["NetworkSettings"]["Networks"]
    return next(n["IPAddress"] for n in networks.values() if n["IPAddress"])


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def get_json(url: str, timeout: float = 5.0, token: str | None = None) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=_auth(token)), timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def post_json(url: str, body: dict[str, Any], timeout: float = 5.0, token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json", **_auth(token)}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


class PostgresContainer(DockerContainer):
    def __init__(self, network: Network, secrets_dir: Path, image: str = "analyticbot/postgres:bookworm") -> None:
        super().__init__(image)
        self.with_network(network).with_network_aliases("postgres")
        self.with_env("POSTGRES_USER", "analyticbot").with_env("POSTGRES_DB", "analyticbot")
        self.with_env("POSTGRES_PASSWORD_FILE", "/run/secrets/postgres_password")
        self.with_volume_mapping(str(secrets_dir / "postgres_password"), "/run/secrets/postgres_password", "ro")
        # testcontainers' with_tmpfs_mount takes a size only; these need an owner.
        self.tmpfs.update({"/tmp": "", "/var/run/postgresql": "uid=10001,gid=10001"})
        self.with_kwargs(**HARDENED)

    def start(self) -> PostgresContainer:
        super().start()
        # A real query over TCP as the server will be used, not "the port is open".
        _ready_or_stop(self, lambda: self.query("SELECT 1") == "1", 90, "PostgreSQL")
        return self

    def query(self, sql: str) -> str:
        result = self.exec(["psql", "-h", "127.0.0.1", "-U", "analyticbot", "-d", "analyticbot", "-tAc", sql])
        if result.exit_code != 0:
            # TCP needs the password: fall back to the trusted socket until the listener is up.
            result = self.exec(["psql", "-U", "analyticbot", "-d", "analyticbot", "-tAc", sql])
        return result.output.decode().strip() if result.exit_code == 0 else ""


class RedisContainer(DockerContainer):
    def __init__(
        self, network: Network, secrets_dir: Path, conf: Path, image: str = "analyticbot/redis:bookworm"
    ) -> None:
        super().__init__(image)
        self.with_network(network).with_network_aliases("redis")
        self.with_command("redis-server /usr/local/etc/redis/redis.conf")
        self.with_volume_mapping(str(conf), "/usr/local/etc/redis/redis.conf", "ro")
        self.with_volume_mapping(str(secrets_dir / "redis_acl"), "/run/secrets/redis_acl", "ro")
        self.tmpfs.update({"/tmp": "", "/data": "uid=10001,gid=10001"})
        self.with_kwargs(**HARDENED)

    def start(self) -> RedisContainer:
        super().start()
        _ready_or_stop(
            self, lambda: self.exec(["redis-cli", "-h", "127.0.0.1", "ping"]).output.strip() == b"PONG", 30, "Redis"
        )
        return self


class ServiceContainer(DockerContainer):
    """api, bot or mtproto from its image, with the secret files it reads."""

    SECRETS: ClassVar[dict[str, tuple[str, ...]]] = {
        "api": ("postgres_api_password", "redis_password", "jwt_secret_key"),
        "bot": ("telegram_webhook_secret", "bot_token", "api_read_token"),
        "mtproto": ("postgres_collector_password", "telegram_api_id", "telegram_api_hash", "telegram_session"),
    }

    def __init__(self, service: str, network: Network, secrets_dir: Path, environment: str = "production") -> None:
        super().__init__(f"analyticbot/{service}:latest")
        self.service = service
        self.secrets_dir = secrets_dir
        self.with_network(network).with_network_aliases(service)
        self.with_env("ENVIRONMENT", environment).with_env("POSTGRES_HOST", "postgres").with_env("REDIS_HOST", "redis")
        self.with_env("REDIS_USERNAME", "analyticbot").with_env("API_BASE_URL", "http://api:8000")
        # A closed local port stands in for Telegram: nothing leaves this machine.
        self.with_env("TELEGRAM_API_BASE", "http://127.0.0.1:9")
        secrets.ensure_optional_placeholders(secrets_dir)
        for name in self.SECRETS[service]:
            self.with_volume_mapping(str(secrets_dir / name), f"/run/secrets/{name}", "ro")
            self.with_env(f"{name.upper()}_FILE", f"/run/secrets/{name}")
        self.with_tmpfs_mount("/tmp").with_kwargs(**HARDENED)

    @property
    def url(self) -> str:
        return f"http://{address(self)}:8000"

    def token(self, scope: str = "write") -> str:
        """A bearer token signed with the key this container reads."""
        key = secrets.read_secret("jwt_secret_key", self.secrets_dir)
        return tokens.mint(key, tokens.parse_scopes(scope), tokens.parse_ttl("1h"), subject="tests").value

    def start(self) -> ServiceContainer:
        super().start()
        _ready_or_stop(self, lambda: get_json(f"{self.url}/health/live", 2)[0] == 200, 90, self.service)
        return self

    def docker_health(self) -> str:
        self.get_wrapped_container().reload()
        return self.get_wrapped_container().attrs["State"].get("Health", {}).get("Status", "none")

    def wait_docker_healthy(self, timeout: float = 60) -> str:
        return _until(lambda: self.docker_health() == "healthy" and "healthy", timeout, self, f"{self.service} health")


def run_migrate(network: Network, secrets_dir: Path, timeout: float = 90) -> None:
    """The migrate job, as compose runs it before the API and the collector: schema, roles, grants; exit 0."""
    job = DockerContainer("analyticbot/api:latest").with_network(network)
    job.with_command("python3 -m analyticbot_api.migrate").with_env("POSTGRES_HOST", "postgres")
    for name in model.BY_NAME["migrate"].secrets:
        job.with_volume_mapping(str(secrets_dir / name), f"/run/secrets/{name}", "ro")
    job.with_tmpfs_mount("/tmp").with_kwargs(**HARDENED)
    job.start()
    try:
        status = job.get_wrapped_container().wait(timeout=timeout)
        stdout, stderr = job.get_logs()
        if status["StatusCode"] != 0:
            raise StartupFailed(f"migrate exited {status['StatusCode']}; logs:\n{(stdout + stderr).decode()[-3000:]}")
    finally:
        job.stop()
