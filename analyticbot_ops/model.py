"""The stack as one model: its environments, its services (what each is, who it runs as, the secrets it
reads, its image, whether two may run at once) and the Compose label names. Everything else in the
toolkit derives from here; files that cannot import it (compose files, the Makefile) are held to it
by tests (tests/unit/test_model.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ENVIRONMENTS: tuple[str, ...] = ("dev", "staging", "prod")
# The Compose project of each environment, unless COMPOSE_PROJECT_NAME says otherwise.
PROJECTS: dict[str, str] = {"dev": "analyticbot-dev", "staging": "analyticbot-staging", "prod": "analyticbot"}
DEFAULT_NAMESPACE = "analyticbot"
# Every container of ours runs as this uid:gid (the images create the user; secrets are owned by it).
APP_UID = 10001
# The database and its owner role (the official image's POSTGRES_USER and POSTGRES_DB), and the roles the migrate
# job makes for each client, with the secret that holds each one's password.
DATABASE = DATABASE_OWNER = "analyticbot"
POSTGRES_ROLES: dict[str, str] = {
    "postgres_password": DATABASE_OWNER,
    "postgres_api_password": "analyticbot_api",
    "postgres_collector_password": "analyticbot_collector",
    "postgres_monitor_password": "analyticbot_monitor",
}
# The Redis ACL users, by the secret that holds each one's password: the app, the toolkit's admin, the exporter.
REDIS_USERS: dict[str, str] = {
    "redis_password": "analyticbot",
    "redis_admin_password": "ops",
    "redis_monitor_password": "monitor",
}
# The services that read and write the database through the schema the migrate job applies.
DATABASE_CLIENTS: tuple[str, ...] = ("api", "mtproto")
# The port our Python services answer HTTP (and their health routes) on.
APP_PORT = 8000

Kind = Literal["data", "app", "proxy", "job", "monitor", "backup"]


@dataclass(frozen=True)
class Service:
    """One service of the stack."""

    name: str
    # data: state on a volume; app: our Python code; proxy: the TLS front; job: runs once and exits;
    # monitor: the monitoring overlay (compose/docker-compose.monitoring.yml), on unless ops.monitoring is false;
    # backup: pgBackRest's agent and repository host (compose/docker-compose.backup.yml), on unless ops.backup is false
    kind: Kind
    image: str  # the image's repository name under the namespace: NAMESPACE/image:tag
    tag: str  # latest for what we build from source, the Debian codename for the base images
    secrets: tuple[str, ...]  # the Docker secrets it mounts (the compose secrets overlay must agree)
    rolling: bool = False  # may briefly run twice, behind the proxy, during an update; else a singleton
    uid: int = APP_UID

    @property
    def image_variable(self) -> str:
        """The setting that names its image (API_IMAGE); a job shares the image of the app it belongs to."""
        return f"{self.image.upper().replace('-', '_')}_IMAGE"

    def default_image(self, namespace: str = DEFAULT_NAMESPACE) -> str:
        return f"{namespace}/{self.image}:{self.tag}"

    @property
    def built_here(self) -> bool:
        """Built from this repository's services/ (a release tags it); else a base image."""
        return self.tag == "latest"


SERVICES: tuple[Service, ...] = (
    Service("postgres", "data", "postgres", "bookworm", ("postgres_password", "pgbackrest_db_conf")),
    Service("redis", "data", "redis", "bookworm", ("redis_acl",)),
    Service(
        "migrate",
        "job",
        "api",
        "latest",
        ("postgres_password", "postgres_api_password", "postgres_collector_password", "postgres_monitor_password"),
    ),
    Service(
        "api",
        "app",
        "api",
        "latest",
        ("postgres_api_password", "redis_password", "jwt_secret_key", "stripe_secret_key", "openai_api_key"),
        rolling=True,
    ),
    Service(
        "bot",
        "app",
        "bot",
        "latest",
        # alert_*: Alertmanager's webhook, forwarded to the operator chat.
        ("bot_token", "telegram_webhook_secret", "api_read_token", "alert_webhook_token", "alert_chat_id"),
        rolling=True,
    ),
    # The collector holds one MTProto session: two at once would fight over it.
    Service(
        "mtproto",
        "app",
        "mtproto",
        "latest",
        ("postgres_collector_password", "telegram_api_id", "telegram_api_hash", "telegram_session"),
    ),
    Service("proxy", "proxy", "proxy", "latest", ()),
    # pgBackRest (the postgres image): the database side's TLS server and repository 1's schedule, and the
    # repository host (repository 2), which plays another machine on a network of its own.
    Service("backup-agent", "backup", "postgres", "bookworm", ("pgbackrest_db_conf",)),
    Service("backup-repo", "backup", "postgres", "bookworm", ("pgbackrest_repo_conf",)),
    # The monitoring overlay, each part from a Debian package (baseimages.MONITORING_RECIPES).
    Service("prometheus", "monitor", "prometheus", "bookworm", ("prometheus_password", "prometheus_web_config")),
    # Its healthcheck logs in with prometheus_password; the web config holds only the hash.
    Service(
        "alertmanager",
        "monitor",
        "alertmanager",
        "bookworm",
        ("prometheus_password", "prometheus_web_config", "alert_webhook_token"),
    ),
    Service("postgres-exporter", "monitor", "postgres-exporter", "bookworm", ("postgres_monitor_password",)),
    Service("redis-exporter", "monitor", "redis-exporter", "bookworm", ("redis_monitor_auth",)),
    Service("nginx-exporter", "monitor", "nginx-exporter", "bookworm", ()),
    Service("blackbox-exporter", "monitor", "blackbox-exporter", "bookworm", ()),
)
BY_NAME: dict[str, Service] = {s.name: s for s in SERVICES}
# The services that run and get healthy, in start order; jobs run once per deploy and exit (0 is success).
RUNNING: tuple[str, ...] = tuple(s.name for s in SERVICES if s.kind != "job")
MONITORS: tuple[str, ...] = tuple(s.name for s in SERVICES if s.kind == "monitor")
JOBS: tuple[str, ...] = tuple(s.name for s in SERVICES if s.kind == "job")
APPS: tuple[str, ...] = tuple(s.name for s in SERVICES if s.kind == "app")
ROLLING: tuple[str, ...] = tuple(s.name for s in SERVICES if s.rolling)
# The images built from this repository that the stack runs (`invoke images.build` builds certbot too, a tool
# image), and the setting naming each.
BUILT: tuple[str, ...] = tuple(dict.fromkeys(s.image for s in SERVICES if s.built_here))
IMAGE_VARIABLES: dict[str, str] = {s.image: s.image_variable for s in SERVICES}
# The settings naming what we build, which a release pins (api: API_IMAGE).
BUILT_VARIABLES: dict[str, str] = {image: IMAGE_VARIABLES[image] for image in BUILT}


BACKUPS: tuple[str, ...] = tuple(s.name for s in SERVICES if s.kind == "backup")

# The ports each service listens on, by name (a Kubernetes port name: at most 15 characters). Compose publishes
# none but the proxy's; Kubernetes Services, probes and network policies name them. The apps answer HTTP (and
# their probes) on 8000; the proxy's nginx listens on unprivileged ports (nginx/conf.d/analyticbot.conf), 8081
# on loopback only; pgBackRest's TLS server listens on its default port on both sides of the backup path.
PORTS: dict[str, dict[str, int]] = {
    "postgres": {"postgresql": 5432},
    "redis": {"redis": 6379},
    "migrate": {},
    "api": {"http": APP_PORT},
    "bot": {"http": APP_PORT},
    "mtproto": {"http": APP_PORT},
    "proxy": {"http": 8080, "https": 8443, "stub-status": 8082},
    "backup-agent": {"pgbackrest": 8432},
    "backup-repo": {"pgbackrest": 8432},
    "prometheus": {"http": 9090},
    "alertmanager": {"http": 9093},
    "postgres-exporter": {"metrics": 9187},
    "redis-exporter": {"metrics": 9121},
    "nginx-exporter": {"metrics": 9113},
    "blackbox-exporter": {"http": 9115},
}
# The proxy's nginx ports, inside its container (unprivileged: no capability needed to bind them).
PROXY_HTTP_PORT, PROXY_HTTPS_PORT = PORTS["proxy"]["http"], PORTS["proxy"]["https"]
# Where the proxy's by-name relay for each rolling service listens, on its loopback (nginx/conf.d/analyticbot.conf):
# the backup of the upstream group of that service's containers, the service name resolved per request.
RELAY_PORTS = {"api": 8091, "bot": 8092}
# uvicorn closes an idle keep-alive connection after 5 s: nginx lets go of its idle ones first, so that it never
# sends a request on a connection the app is closing (a POST would then fail: nginx retries no write).
UPSTREAM_IDLE_SECONDS = 4
# The idle connections to an upstream group that each nginx worker keeps. Fewer than the requests a worker has in
# flight, and every request beyond them ends by closing its connection, the next one opening another: with 16 under
# 64 client connections (benchmarks/stack.py, 2026-12-07), about 10 % fewer summaries a second and a p99 a fifth
# higher than with 128. An idle one costs the app a socket and a few kilobytes, for UPSTREAM_IDLE_SECONDS.
UPSTREAM_KEEPALIVE = 128
# The services that reach the internet: Telegram's Bot API and MTProto servers. In Compose they are the apps on the
# one network that is not internal besides the proxy's front (backend); Kubernetes gives only them internet egress.
INTERNET: tuple[str, ...] = ("bot", "mtproto")


def services(monitoring: bool, backup: bool = True) -> tuple[Service, ...]:
    """The services a stack runs: all of them, or without the monitoring overlay's or the backup overlay's."""
    return tuple(s for s in SERVICES if (monitoring or s.kind != "monitor") and (backup or s.kind != "backup"))


# Secrets a service reads only when it first makes its data: postgres' initdb takes the owner's password from
# POSTGRES_PASSWORD_FILE, and a restart on an existing cluster never reads it again (a rotation is ALTER ROLE). A
# new value changes nothing in it, so it is never restarted for one (on a swarm it keeps the version it has).
FIRST_START_ONLY: dict[str, tuple[str, ...]] = {"postgres": ("postgres_password",)}


def readers(secret: str) -> tuple[str, ...]:
    """The services that mount a secret."""
    return tuple(s.name for s in SERVICES if secret in s.secrets)


def default_images(namespace: str = DEFAULT_NAMESPACE) -> dict[str, str]:
    """Each image setting's value when nothing overrides it (API_IMAGE: analyticbot/api:latest)."""
    return {s.image_variable: s.default_image(namespace) for s in SERVICES}


class Labels:
    """The labels Compose puts on what it creates, which the toolkit reads to find a stack's containers."""

    PROJECT = "com.docker.compose.project"
    SERVICE = "com.docker.compose.service"
    ONEOFF = "com.docker.compose.oneoff"
    CONFIG_HASH = "com.docker.compose.config-hash"
    WORKING_DIR = "com.docker.compose.project.working_dir"
