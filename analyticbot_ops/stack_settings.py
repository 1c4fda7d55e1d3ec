"""The settings of a stack's environment: each one's default (per environment and common), what it is for, where
each value came from (defaults, the environment's .env file, the process environment, overrides), and their
validation. Ground level: files and the model only; compose.py turns them into a running stack."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path

from . import envfile, model
from .errors import BadInput
from .paths import REPO_ROOT, SECRETS_DIR

# Defaults per environment; the environment's .env file and the process
# environment override them. Staging runs beside the others on its own ports
# and subnets; dev and prod use the documented subnets.
DEFAULTS: dict[str, dict[str, str]] = {
    "dev": {
        "PROXY_BIND": "127.0.0.1",
        "HTTP_PORT": "8080",
        "HTTPS_PORT": "8443",
        "EXTRA_SERVER_NAMES": "localhost 127.0.0.1",
    },
    "staging": {
        "PROXY_BIND": "127.0.0.1",
        "HTTP_PORT": "9080",
        "HTTPS_PORT": "9443",
        "FRONTEND_SUBNET": "172.23.0.0/24",
        "BACKEND_SUBNET": "172.24.0.0/24",
        "DATABASE_SUBNET": "172.25.0.0/24",
        "MONITORING_SUBNET": "172.27.0.0/24",
        "BACKUP_SUBNET": "172.27.1.0/24",
        "PROMETHEUS_PORT": "9190",
        "ALERTMANAGER_PORT": "9193",
    },
    "prod": {"PROXY_BIND": "0.0.0.0", "HTTP_PORT": "80", "HTTPS_PORT": "443"},
}
COMMON_DEFAULTS = {
    "FRONTEND_SUBNET": "172.20.0.0/24",
    "BACKEND_SUBNET": "172.21.0.0/24",
    "DATABASE_SUBNET": "172.22.0.0/24",
    "MONITORING_SUBNET": "172.26.0.0/24",
    "BACKUP_SUBNET": "172.26.1.0/24",
    "PROMETHEUS_PORT": "9090",
    "ALERTMANAGER_PORT": "9093",
    "PROMETHEUS_RETENTION": "15d",
    "PROMETHEUS_RETENTION_SIZE": "2GB",
    "SECRETS_DIR": str(SECRETS_DIR),
    "TLS_DIR": str(SECRETS_DIR / "tls"),
    "ARCHIVE_TIMEOUT": "5s",
    "BACKUP_FULL_EVERY": "7d",
    "BACKUP_DIFF_EVERY": "1d",
    "BACKUP_SCHEDULE_TICK": "60s",
    "BACKUP_RETENTION_FULL": "2",
    "BACKUP_RETENTION_DIFF": "7",
}
# Every variable the compose files read, with what it is for (env-template writes these).
SETTINGS: dict[str, str] = {
    "PROXY_BIND": "address the proxy publishes on (127.0.0.1 keeps it local)",
    "HTTP_PORT": "host port for HTTP (ACME challenges and the redirect)",
    "HTTPS_PORT": "host port for HTTPS",
    "FRONTEND_SUBNET": "subnet of the frontend network (proxy, api, bot)",
    "BACKEND_SUBNET": "subnet of the backend network (bot and collector egress)",
    "DATABASE_SUBNET": "subnet of the internal database network",
    "MONITORING_SUBNET": "subnet of the internal monitoring network (Prometheus, Alertmanager, exporters)",
    "BACKUP_SUBNET": "subnet of the internal backup network (the database side and the repository host)",
    "ARCHIVE_TIMEOUT": "PostgreSQL's archive_timeout: a WAL segment is archived at least this often (default 5s); "
    "the bound on the writes a lost disk takes with it",
    "BACKUP_FULL_EVERY": "the backup schedule: a full backup when the last one is this old (default 7d; 0: none)",
    "BACKUP_DIFF_EVERY": "the backup schedule: a differential backup when the last backup is this old (default 1d)",
    "BACKUP_SCHEDULE_TICK": "how often the backup schedule looks at the clock (default 60s)",
    "BACKUP_RETENTION_FULL": "full backups each repository keeps (default 2); the WAL goes back to the oldest",
    "BACKUP_RETENTION_DIFF": "differential backups each repository keeps (default 7)",
    "PROMETHEUS_PORT": "loopback port of Prometheus's UI and API (basic auth: user ops, prometheus_password)",
    "ALERTMANAGER_PORT": "loopback port of Alertmanager's UI and API (same login as Prometheus)",
    "PROMETHEUS_RETENTION": "how long Prometheus keeps samples (e.g. 15d)",
    "PROMETHEUS_RETENTION_SIZE": "the most disk Prometheus's samples may take (e.g. 2GB); the oldest go first",
    "SECRETS_DIR": "directory of the Docker file secrets",
    "TLS_DIR": "directory of fullchain.pem and privkey.pem for the proxy",
    "DOMAIN": "public DNS name: the proxy's primary name, redirect target and tls.prod's domain",
    "EXTRA_SERVER_NAMES": "more names the proxy serves, space-separated (dev: localhost 127.0.0.1); others get nothing",
    "ACME_EMAIL": "contact address for the ACME account (prod only)",
    "RATE_LIMIT_EXEMPT": "client addresses or subnets, space-separated, exempt from the per-client read limit "
    "(a load generator, a trusted monitor); writes stay limited (default: none)",
    **{
        variable: f"image of {image} (default: NAMESPACE/{image}, NAMESPACE from invoke.yaml's ops.namespace)"
        for image, variable in model.IMAGE_VARIABLES.items()
    },
    "TELEGRAM_API_BASE": "Telegram Bot API server for the bot (default: Telegram's own)",
    "API_WORKERS": "API server processes (default 0: sized from the API container's CPU limit)",
    "COMPOSE_PROJECT_NAME": "project name (default: analyticbot-dev, analyticbot-staging, analyticbot)",
}
# What nginx's server_name takes from us (the proxy's entrypoint applies the same rule).
_SERVER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*", re.ASCII)


def check_env(env: str) -> str:
    if env not in model.ENVIRONMENTS:
        raise BadInput(f"unknown environment {env!r}; use one of: {', '.join(model.ENVIRONMENTS)}")
    return env


def env_file(env: str) -> Path:
    """Each environment reads only its own file: a prod deploy never sees .env.dev."""
    return REPO_ROOT / f".env.{check_env(env)}"


def secrets_dir(env: str) -> Path:
    """The secrets directory of an environment's settings (SECRETS_DIR)."""
    return Path(settings_with_sources(env)["SECRETS_DIR"][0])


def tls_dir(env: str) -> Path:
    """The proxy's certificate directory of an environment's settings (TLS_DIR)."""
    return Path(settings_with_sources(env)["TLS_DIR"][0])


def validate_settings(values: Mapping[str, str], source: str) -> None:
    """Refuse values Compose would accept and then fail on, or publish wrongly."""
    for key in ("HTTP_PORT", "HTTPS_PORT", "PROMETHEUS_PORT", "ALERTMANAGER_PORT"):
        # ASCII digits only: str.isdigit() also takes other scripts' digits, which Docker then refuses.
        if key in values and not (re.fullmatch(r"[0-9]{1,5}", values[key]) and 0 < int(values[key]) < 65536):
            raise BadInput(f"{source}: {key} must be a port number, got {values[key]!r}")
    for key in ("FRONTEND_SUBNET", "BACKEND_SUBNET", "DATABASE_SUBNET", "MONITORING_SUBNET", "BACKUP_SUBNET"):
        if key in values:
            try:
                ipaddress.ip_network(values[key])
            except ValueError:
                raise BadInput(f"{source}: {key} must be a subnet like 172.20.0.0/24, got {values[key]!r}") from None
    for name in values.get("EXTRA_SERVER_NAMES", "").split():
        if not _SERVER_NAME.fullmatch(name):
            raise BadInput(f"{source}: EXTRA_SERVER_NAMES holds {name!r}, which is not a host name or IPv4 address")
    for exempt in values.get("RATE_LIMIT_EXEMPT", "").split():
        try:
            ipaddress.IPv4Network(exempt)
        except ValueError:
            raise BadInput(
                f"{source}: RATE_LIMIT_EXEMPT holds {exempt!r}, which is not an IPv4 address or subnet"
            ) from None
    if "API_WORKERS" in values and not re.fullmatch(r"[0-9]{1,2}", values["API_WORKERS"]):
        raise BadInput(f"{source}: API_WORKERS must be a number of processes (0: sized), got {values['API_WORKERS']!r}")
    retention = values.get("PROMETHEUS_RETENTION")
    if retention is not None and not re.fullmatch(r"([0-9]+(ms|s|m|h|d|w|y))+", retention):
        raise BadInput(f"{source}: PROMETHEUS_RETENTION must be a duration like 15d, got {retention!r}")
    size = values.get("PROMETHEUS_RETENTION_SIZE")
    if size is not None and not re.fullmatch(r"[0-9]+(B|KB|MB|GB|TB|PB|EB)", size):
        raise BadInput(f"{source}: PROMETHEUS_RETENTION_SIZE must be a size like 2GB, got {size!r}")
    # PostgreSQL's own unit for it is s (it reads 5m as an error): seconds only.
    if "ARCHIVE_TIMEOUT" in values and not re.fullmatch(r"[1-9][0-9]{0,4}s?", values["ARCHIVE_TIMEOUT"]):
        raise BadInput(f"{source}: ARCHIVE_TIMEOUT must be seconds like 5s, got {values['ARCHIVE_TIMEOUT']!r}")
    for key in ("BACKUP_FULL_EVERY", "BACKUP_DIFF_EVERY", "BACKUP_SCHEDULE_TICK"):
        # What the schedule's shell arithmetic reads (compose/pgbackrest/service.sh).
        if key in values and not re.fullmatch(r"[0-9]{1,6}[smhd]?", values[key]):
            raise BadInput(f"{source}: {key} must be a duration like 90s, 15m, 6h or 7d, got {values[key]!r}")
    # 0 turns a kind of backup off; a tick of 0 would make the schedule a busy loop (`sleep 0`).
    tick = values.get("BACKUP_SCHEDULE_TICK")
    if tick is not None and int(tick.rstrip("smhd")) == 0:
        raise BadInput(f"{source}: BACKUP_SCHEDULE_TICK must be at least 1s, got {tick!r}")
    for key in ("BACKUP_RETENTION_FULL", "BACKUP_RETENTION_DIFF"):
        if key in values and not (re.fullmatch(r"[0-9]{1,4}", values[key]) and int(values[key]) >= 1):
            raise BadInput(f"{source}: {key} must be a number of backups of at least 1, got {values[key]!r}")
    if "PROXY_BIND" in values:
        try:
            ipaddress.ip_address(values["PROXY_BIND"])
        except ValueError:
            raise BadInput(f"{source}: PROXY_BIND must be an IP address, got {values['PROXY_BIND']!r}") from None


# The networks of a stack and the setting of each one's subnet; `monitoring` only with the overlay.
NETWORKS = {
    "frontend": "FRONTEND_SUBNET",
    "backend": "BACKEND_SUBNET",
    "database": "DATABASE_SUBNET",
    "monitoring": "MONITORING_SUBNET",
    "backup": "BACKUP_SUBNET",
}


def _process_env() -> dict[str, str]:
    import os

    return dict(os.environ)


# Where an image setting came from when nothing named it: releases pin exactly these.
NAMESPACE_SOURCE = "ops.namespace"


def settings_with_sources(
    env: str, overrides: Mapping[str, str] | None = None, namespace: str = model.DEFAULT_NAMESPACE
) -> dict[str, tuple[str, str]]:
    """Each setting with where it came from: defaults (image names from the namespace), then the
    environment's .env file, then the process environment, then explicit overrides."""
    check_env(env)
    settings = {k: (v, "default") for k, v in {**COMMON_DEFAULTS, **DEFAULTS[env]}.items()}
    settings.update({k: (v, NAMESPACE_SOURCE) for k, v in model.default_images(namespace).items()})
    path = env_file(env)
    if path.exists():
        from_file = envfile.read(path)
        validate_settings(from_file, str(path.name))
        settings.update({k: (v, path.name) for k, v in from_file.items() if k in SETTINGS})
    process = _process_env()
    settings.update({k: (process[k], "environment") for k in SETTINGS if k in process})
    settings.update({k: (v, "override") for k, v in (overrides or {}).items()})
    validate_settings({k: v for k, (v, _) in settings.items()}, "settings")
    frontend = settings["FRONTEND_SUBNET"][0]
    settings["PROXY_FRONTEND_IP"] = (proxy_address(frontend), "derived from FRONTEND_SUBNET")
    settings["NGINX_EXPORTER_IP"] = (nginx_exporter_address(frontend), "derived from FRONTEND_SUBNET")
    # Compose resolves relative paths from compose/, the toolkit from the current
    # directory: anchor both at the repository so they name the same folder.
    for key in ("SECRETS_DIR", "TLS_DIR"):
        value, source = settings[key]
        settings[key] = (str((REPO_ROOT / value).resolve()), source)
    return settings


def proxy_address(subnet: str) -> str:
    """The proxy's fixed address on the frontend network: the subnet's last host. Docker hands out
    addresses from the bottom, so the top one stays free; the api and the bot trust X-Forwarded-*
    from this address only."""
    network = ipaddress.ip_network(subnet)
    if network.version != 4 or network.prefixlen > 28:
        raise BadInput(f"FRONTEND_SUBNET must be an IPv4 subnet of /28 or larger, got {subnet!r}")
    return str(network.broadcast_address - 1)


def nginx_exporter_address(subnet: str) -> str:
    """The nginx exporter's fixed address on the frontend network, below the proxy's: the proxy's stub_status
    answers this address only."""
    return str(ipaddress.ip_address(proxy_address(subnet)) - 1)
