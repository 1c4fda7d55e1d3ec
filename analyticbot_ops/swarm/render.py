"""The stack for `docker stack deploy`, rendered from the same compose files Compose runs.

What Swarm on Engine 20.10 does differently, and what each becomes here (checked on the lab):
- `depends_on` with conditions is refused: dropped; the api and the collector wait for the schema
  themselves, and Swarm restarts what starts too early.
- service-level `pids_limit` is refused: `deploy.resources.limits.pids`.
- service `tmpfs` is dropped silently: a `type: tmpfs` mount.
- `security_opt` is ignored, so no-new-privileges cannot be set per service: every container already
  runs as uid 10001 with every capability dropped (`cap_drop: ALL`), which is what no-new-privileges
  protects against; the audit reports it as its own finding, AB-SWARM-NNP.
- `container_name`, `build` and `restart` are ignored: `deploy.restart_policy` instead.
- a host IP in `ports` is dropped: long-form ports in `mode: host` (no ingress routing mesh here: no
  IPVS), which also keeps the client's address.
- bind mounts name host paths a node does not have: the TLS pair becomes secrets, redis.conf a config.
- the TLS pair reaches the proxy through `edge-tls`, a global service on the same edge nodes that mounts the
  secrets and copies them into the node's `edge-tls` volume (tmpfs), where the proxy reads them and reloads
  nginx when they change (nginx/edge-tls.sh). A new certificate is then a start-first update of a service that
  publishes nothing, never a restart of a proxy that holds the node's ports.
- no IPVS: every service is `endpoint_mode: dnsrr`; each proxy asks Swarm's DNS for the api's and the bot's
  replicas every second and keeps their connections alive (nginx/entrypoint.sh, UPSTREAM_TASKS).
- secrets are mounted when a task starts, so a new version restarts what mounts it: postgres, which reads its
  password only at initdb, keeps the version it runs with (_keep_first_start): a deploy after a rotation leaves
  it running.
- the edge: the proxy is a `global` service on the nodes labelled analyticbot.edge=true, each task publishing
  80/443 on its node; an update stops one edge's task before starting its next (a host port is taken once per
  node), one edge node at a time. The api and the bot run two replicas each.
- the monitoring overlay: its files from compose/monitoring/ become configs (Prometheus finds each task by DNS,
  `tasks.<service>`); Prometheus and Alertmanager publish nothing, since Swarm would drop the loopback address
  and publish them on every interface; no address is fixed on an overlay, so the proxy joins the monitoring
  network and its stub_status answers that network's subnet, where only the overlay's services are.
- the backup overlay: pgBackRest's settings and service.sh become configs, the TLS files secrets mounted where
  pgBackRest reads them; the async archiver's spool moves to /tmp (a tmpfs owned by uid 10001 cannot be given);
  backup-agent runs on the data node beside postgres (their socket and data volumes are that node's), and
  backup-repo on any other node: repository 2 is on another machine, as it is meant to be."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import model

STACK_VERSION = "3.9"
# The service that hands the TLS secrets to the proxy on each edge node (module docstring; nginx/edge-tls.sh),
# and its network of its own.
EDGE_TLS = "edge-tls"
# The overlays' subnets: fixed, so that the services can trust X-Forwarded-* from the frontend tier
# (the proxy has no fixed address in Swarm).
OVERLAYS = {
    "frontend": "10.120.0.0/24",
    "backend": "10.121.0.0/24",
    "database": "10.122.0.0/24",
    "monitoring": "10.123.0.0/24",
    "backup": "10.124.0.0/24",
    EDGE_TLS: "10.125.0.0/28",  # edge-tls alone (it talks to no one): the smallest subnet
}
INTERNAL = ("database", "monitoring", "backup", EDGE_TLS)
# Two of each HTTP app, so that the loss of one node leaves one serving. The bot can: Telegram's webhook has one
# URL, which any edge proxy takes and hands to either replica (the bot keeps no state of its own). The collector
# cannot: it holds one MTProto session, and two would fight over it.
REPLICAS = {"api": 2, "bot": 2}
# Swarm counts a start-first task as started once Docker calls it healthy: the first check, 10 s after start,
# gates each step (the price of checks that cost almost nothing at rest), and a release that never answers
# fails there and rolls back. The monitor then watches each step 15 s more for a task that exits.
MONITOR = "15s"
TLS_TARGET = "/etc/nginx/tls"
# The node-local volume edge-tls and the proxy share (EDGE_TLS), and the link in it that the proxy watches.
EDGE_TLS_VOLUME = "edge-tls"
EDGE_TLS_TARGET = "/edge-tls"
TLS_WATCH = f"{TLS_TARGET}/current"
# Memory only, like Swarm's own secrets: the private key never reaches a node's disk. One tmpfs per node, shared by
# the containers there that mount it (the local driver mounts it once, counting its users); the app user's alone.
EDGE_TLS_DRIVER_OPTS = {
    "type": "tmpfs",
    "device": "tmpfs",
    "o": f"size=1m,uid={model.APP_UID},gid={model.APP_UID},mode=0700",
}
# edge-tls is healthy while the node's `current` is its own generation: an update waits for the new task to have
# moved it. (`$$`: the stack file's escape of `$`.)
EDGE_TLS_HEALTHCHECK = [
    "CMD",
    "sh",
    "-c",
    f'[ "$$(busybox readlink {EDGE_TLS_TARGET}/current)" = "$$(busybox cat /tmp/generation)" ]',
]
NOCOPY = {"nocopy": True}  # the volume keeps its own owner and mode (uid 10001, 0700), never the image folder's
DATA_LABEL = "analyticbot.data"  # the node label of the one that keeps postgres' and redis' volumes
DATA_CONSTRAINT = f"node.labels.{DATA_LABEL} == true"
OFF_DATA_CONSTRAINT = f"node.labels.{DATA_LABEL} != true"  # the repository host: never the database's node
# The nodes that take the site's traffic: the proxy runs on every one of them (a global service), each publishing
# 80/443 on its own address, with DNS round robin or a load balancer in front. Losing one leaves the others
# serving; the proxy never moves to a node outside the edge (whose address no client knows).
EDGE_LABEL = "analyticbot.edge"
EDGE_CONSTRAINT = f"node.labels.{EDGE_LABEL} == true"
# Where every edge proxy passes an ACME challenge it has no file for: the one-shot certbot that tls.prod runs on
# the frontend overlay under this name (swarm/certificates.py); the edges share no webroot.
ACME_SOLVER = "acme-solver:8402"


# Services the stack adds to the model's, each part of one model service: it runs that service's image, with its
# user and hardening, and the audit judges it as that service.
PART_OF = {EDGE_TLS: "proxy"}


def spec_of(name: str) -> model.Service:
    """The model's service a rendered service is (edge-tls: the proxy's part)."""
    return model.BY_NAME[PART_OF.get(name, name)]


def versioned(project: str, name: str, content: bytes) -> str:
    """A Swarm secret's name: secrets are immutable, so a new value is a new name (rotation)."""
    return f"{project}_{name}_{hashlib.sha256(content).hexdigest()[:12]}"


def _tmpfs(entry: str) -> dict[str, Any] | None:
    """A compose tmpfs entry as a Swarm mount, or None for one Swarm cannot give: 20.10's stack loader keeps
    only a tmpfs' size, and mounts it root-owned 0755, so a folder compose gives to uid 10001 would be
    unwritable (postgres' socket folder: the stack moves the socket to /tmp instead)."""
    target, _, options = entry.partition(":")
    settings = dict(o.split("=", 1) for o in options.split(",") if "=" in o)
    if "uid" in settings or "mode" in settings:
        return None
    return {"type": "tmpfs", "target": target}


def _limits(service: Mapping[str, Any]) -> dict[str, Any]:
    limits = dict(((service.get("deploy") or {}).get("resources") or {}).get("limits") or {})
    if "cpus" in limits:
        limits["cpus"] = str(limits["cpus"])
    if service.get("pids_limit"):
        limits["pids"] = int(service["pids_limit"])
    return limits


def _deploy(name: str, service: Mapping[str, Any]) -> dict[str, Any]:
    spec = model.BY_NAME[name]
    deploy: dict[str, Any] = {"endpoint_mode": "dnsrr", "resources": {"limits": _limits(service)}}
    if spec.kind == "proxy":
        return deploy | _edge()
    deploy["replicas"] = REPLICAS.get(name, 1)
    if spec.kind == "job":
        # Runs to completion once per deploy; a failure is retried, a success is not restarted.
        deploy["restart_policy"] = {"condition": "on-failure", "delay": "2s", "max_attempts": 10}
    else:
        deploy["restart_policy"] = {"condition": "any", "delay": "1s"}
    if spec.kind == "data" or name in _KEEPS_DATA:
        deploy["placement"] = {"constraints": [DATA_CONSTRAINT]}  # their volumes live on that node
    elif name == "backup-repo":
        deploy["placement"] = {"constraints": [OFF_DATA_CONSTRAINT]}
    if spec.rolling:
        update = {"parallelism": 1, "order": "start-first", "failure_action": "rollback", "monitor": MONITOR}
        deploy["update_config"] = update
        deploy["rollback_config"] = {"parallelism": 1, "order": "start-first"}
    elif spec.kind == "job":
        # The job exits by design, and Swarm's update monitor counts any exit as a failed update: with rollback it
        # would run the previous spec again (after a password rotation, with the old password, failing for good).
        # Its outcome is the toolkit's to judge (deploy.wait_converged waits for it to complete).
        deploy["update_config"] = {"order": "stop-first", "failure_action": "continue"}
    else:
        # A singleton (the collector's session, a database): the old one stops before the new one starts.
        deploy["update_config"] = {"order": "stop-first", "failure_action": "rollback", "monitor": MONITOR}
    return deploy


def _edge() -> dict[str, Any]:
    """The proxy: one task on every edge node. Its ports are the node's own (host mode), which a second task on
    the same node could not take, so an update stops the old task first, one edge node at a time: the other
    edges serve meanwhile."""
    one_edge_at_a_time = {"parallelism": 1, "order": "stop-first"}
    return {
        "mode": "global",
        "placement": {"constraints": [EDGE_CONSTRAINT]},
        "restart_policy": {"condition": "any", "delay": "1s"},
        "update_config": one_edge_at_a_time | {"failure_action": "rollback", "monitor": MONITOR},
        "rollback_config": one_edge_at_a_time,
    }


# Monitoring services with a volume of their own (samples, silences): on the data node too, to keep it; and
# the backup agent, which reads postgres' data volume and socket.
_KEEPS_DATA = ("prometheus", "alertmanager", "backup-agent")


def render(
    merged: Mapping[str, Any],
    *,
    project: str,
    images: Mapping[str, str],
    secret_files: Mapping[str, Path],
    tls_dir: Path,
    redis_conf: Path,
    http_port: int,
    https_port: int,
    monitoring_files: Mapping[str, Path] | None = None,
    backup_tls_dir: Path | None = None,
    first_start_versions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The stack file as data. `images`: each image variable's registry reference (pinned by digest);
    `secret_files`: each secret's file (its versioned name comes from its content); `monitoring_files`: each
    monitoring config's file where it is not compose/monitoring's own (Prometheus's, rendered for Swarm);
    `backup_tls_dir`: the backup path's certificates (tls/backup.py), with the backup overlay;
    `first_start_versions`: the versioned name of each secret of model.FIRST_START_ONLY that the running stack's
    service mounts, which it keeps (see _keep_first_start)."""
    services: dict[str, Any] = {}
    for name, source in merged["services"].items():
        service = copy.deepcopy(dict(source))
        # sysctls too: the proxy's port reuse is for Compose's single host (the lab's engine 20.10 takes
        # them only from stack file format 3.8 on, and this renders what Compose merged).
        for dropped in ("depends_on", "container_name", "build", "restart", "security_opt", "pids_limit", "sysctls"):
            service.pop(dropped, None)
        service["image"] = images[model.BY_NAME[name].image_variable]
        mounts = [m for m in map(_tmpfs, service.pop("tmpfs", [])) if m is not None]
        volumes = [v for v in service.pop("volumes", []) if not str(v).startswith("/")]
        service["volumes"] = [*volumes, *mounts] if (volumes or mounts) else []
        if not service["volumes"]:
            service.pop("volumes")
        networks = service.get("networks") or {}
        aliases = {
            n: list(c["aliases"]) for n, c in dict(networks).items() if isinstance(c, Mapping) and c.get("aliases")
        }
        # Names only (no fixed address on an overlay); the proxy's alias, its public name, stays: the edge
        # probe asks for the proxy by that name, as a user does.
        service["networks"] = (
            {n: ({"aliases": aliases[n]} if n in aliases else {}) for n in sorted(networks)}
            if aliases
            else sorted(networks)
        )
        # Swarm mounts a secret as root:root 0444 unless told: each is the service user's alone, as on Compose;
        # one that Compose mounts elsewhere than /run/secrets (pgBackRest's cipher key) keeps its place.
        targets = _targets(service)
        service["secrets"] = [
            {"source": name, "uid": str(model.APP_UID), "gid": str(model.APP_UID), "mode": 0o400}
            | ({"target": targets[name]} if name in targets else {})
            for name in sorted(_sources(service))
            if name in secret_files
        ]
        if not service["secrets"]:
            service.pop("secrets")
        service["deploy"] = _deploy(name, source)
        environment = dict(service.get("environment") or {})
        if "FORWARDED_ALLOW_IPS" in environment:
            environment["FORWARDED_ALLOW_IPS"] = OVERLAYS["frontend"]
        service["environment"] = environment
        services[name] = service
    # The socket folder it would use is not writable in Swarm (see _tmpfs): /tmp instead (the backup overlay's
    # second folder, a volume, stays).
    command = [str(a) for a in services["postgres"].get("command") or ["postgres"]]
    socket = "unix_socket_directories=/var/run/postgresql"
    command = [a.replace(socket, "unix_socket_directories=/tmp") for a in command]
    if not any(a.startswith("unix_socket_directories=") for a in command):
        command += ["-c", "unix_socket_directories=/tmp"]
    services["postgres"]["command"] = command
    proxy = services["proxy"]
    proxy["ports"] = [
        {"target": model.PROXY_HTTP_PORT, "published": http_port, "protocol": "tcp", "mode": "host"},
        {"target": model.PROXY_HTTPS_PORT, "published": https_port, "protocol": "tcp", "mode": "host"},
    ]
    proxy["environment"]["ACME_SOLVER"] = ACME_SOLVER
    # The api's and the bot's replicas as upstream groups whose connections nginx keeps alive, their addresses
    # asked of Swarm's DNS every second by the proxy itself (nginx/entrypoint.sh): the toolkit writes them on
    # Compose (rollout.py), but cannot reach each edge's proxy here, and the tasks move without it.
    proxy["environment"]["UPSTREAM_TASKS"] = " ".join(f"{s}:{model.RELAY_PORTS[s]}" for s in model.ROLLING)
    proxy["environment"]["UPSTREAM_IDLE_SECONDS"] = str(model.UPSTREAM_IDLE_SECONDS)
    # Asked on the frontend overlay by name: Docker's DNS would answer the bot's backend addresses first.
    proxy["environment"]["UPSTREAM_NETWORK"] = f"{project}_frontend"
    # Stopped on an update or a node drain: SIGQUIT is nginx's graceful quit (its listeners close, the requests
    # in flight are answered), where Docker's SIGTERM would drop them; 15 s is the longest request's bound.
    proxy["stop_signal"] = "SIGQUIT"
    proxy["stop_grace_period"] = "15s"
    # The certificate: read from the node's edge-tls volume, reloaded when edge-tls moves its link.
    # nocopy: a new volume mounted over a folder the image has takes that folder's owner and mode (root, 0755),
    # where edge-tls (uid 10001) could no longer write; whichever of the two mounts it first.
    proxy.setdefault("volumes", []).append(
        {"type": "volume", "source": EDGE_TLS_VOLUME, "target": TLS_TARGET, "read_only": True, "volume": dict(NOCOPY)}
    )
    proxy["environment"]["TLS_WATCH"] = TLS_WATCH
    services[EDGE_TLS] = _edge_tls(proxy)
    services["redis"]["configs"] = [
        {"source": "redis_conf", "target": "/usr/local/etc/redis/redis.conf", "uid": str(model.APP_UID), "mode": 0o444}
    ]
    files = {**secret_files, "tls_fullchain": tls_dir / "fullchain.pem", "tls_privkey": tls_dir / "privkey.pem"}
    secrets = {
        name: {"file": str(path), "name": versioned(project, name, path.read_bytes())}
        for name, path in sorted(files.items())
        if any(name in _sources(s) for s in services.values())
    }
    configs = {
        "redis_conf": {"file": str(redis_conf), "name": versioned(project, "redis_conf", redis_conf.read_bytes())}
    }
    if "prometheus" in services:
        configs.update(_monitoring(services, project, monitoring_files or {}))
    if "backup-agent" in services:
        backup_configs, backup_secrets = _backup(services, project, backup_tls_dir)
        configs.update(backup_configs)
        secrets.update(backup_secrets)
    secrets.update(_keep_first_start(services, secrets, first_start_versions or {}))
    networks = {
        name: {"driver": "overlay", "internal": name in INTERNAL, "ipam": {"config": [{"subnet": subnet}]}}
        for name, subnet in OVERLAYS.items()
        if name in (merged.get("networks") or {}) or name == EDGE_TLS
    }
    named: dict[str, Any] = {name: {} for name in merged.get("volumes") or {}}
    named[EDGE_TLS_VOLUME] = {"driver": "local", "driver_opts": dict(EDGE_TLS_DRIVER_OPTS)}
    return {
        "version": STACK_VERSION,
        "services": services,
        "networks": networks,
        "secrets": secrets,
        "configs": configs,
        "volumes": named,
    }


def _edge_tls(proxy: Mapping[str, Any]) -> dict[str, Any]:
    """The service that hands the TLS secrets to the proxy on each edge node (nginx/edge-tls.sh): the proxy's
    image and hardening, no port, an internal network of its own, the secrets mounted, the node's edge-tls volume
    writable."""
    secret = {"uid": str(model.APP_UID), "gid": str(model.APP_UID), "mode": 0o400}
    return {
        "image": proxy["image"],
        "entrypoint": ["/usr/local/bin/edge-tls"],
        "user": f"{model.APP_UID}:{model.APP_UID}",
        "read_only": True,
        "cap_drop": ["ALL"],
        "logging": copy.deepcopy(proxy.get("logging") or {}),
        # It reaches nothing and nothing reaches it: an internal overlay with no other member (Swarm has no
        # "none" network for a service, and with no network named it would join the stack's default one).
        "networks": [EDGE_TLS],
        "secrets": [{"source": "tls_fullchain"} | secret, {"source": "tls_privkey"} | secret],
        "volumes": [
            {"type": "volume", "source": EDGE_TLS_VOLUME, "target": EDGE_TLS_TARGET, "volume": dict(NOCOPY)},
            {"type": "tmpfs", "target": "/tmp"},
        ],
        # The first check comes 10 s after it starts, like every service's here.
        "healthcheck": {
            "test": list(EDGE_TLS_HEALTHCHECK),
            "interval": "10s",
            "timeout": "3s",
            "retries": 3,
        },
        "stop_grace_period": "5s",
        "deploy": {
            "mode": "global",
            "endpoint_mode": "dnsrr",
            "placement": {"constraints": [EDGE_CONSTRAINT]},
            "resources": {"limits": {"cpus": "0.05", "memory": "16M", "pids": 16}},
            "restart_policy": {"condition": "any", "delay": "1s"},
            # It holds no port: its next version starts beside it, moves the link, and only then is it stopped.
            # One edge node at a time, so that a pair nginx refused there stops the roll before the next edge.
            "update_config": {"parallelism": 1, "order": "start-first", "failure_action": "rollback", "monitor": "5s"},
            "rollback_config": {"parallelism": 1, "order": "start-first"},
        },
    }


FIRST_START_SUFFIX = "_at_first_start"


def _keep_first_start(
    services: dict[str, Any], secrets: Mapping[str, Any], deployed: Mapping[str, str]
) -> dict[str, Any]:
    """A service that reads a secret only when it first makes its data (model.FIRST_START_ONLY: postgres' password)
    keeps the version the running stack gave it, under its usual target: a new version would restart it (Swarm
    mounts secrets at a task's start) for nothing, and a database restart drops every request meanwhile. The kept
    version is declared external (it exists; the stack does not write it again). The secrets to declare."""
    kept: dict[str, Any] = {}
    for service_name, names in model.FIRST_START_ONLY.items():
        service = services.get(service_name)
        for name in names:
            version = deployed.get(name)
            if service is None or version is None or name not in secrets or version == secrets[name]["name"]:
                continue
            alias = f"{name}{FIRST_START_SUFFIX}"
            for mount in service.get("secrets") or []:
                if mount["source"] == name:
                    mount["source"], mount["target"] = alias, name
            kept[alias] = {"external": True, "name": version}
    return kept


def _monitoring(services: dict[str, Any], project: str, files: Mapping[str, Path]) -> dict[str, Any]:
    """The monitoring overlay's services as Swarm runs them (see the module's docstring); its configs."""
    from ..monitoring.config import mounted_files  # the overlay's files, only where it is rendered

    configs: dict[str, Any] = {}
    for mounted in mounted_files():
        path = files.get(mounted.name, mounted.source)
        configs[mounted.name] = {"file": str(path), "name": versioned(project, mounted.name, path.read_bytes())}
        services[mounted.service].setdefault("configs", []).append(
            {"source": mounted.name, "target": mounted.target, "uid": str(model.APP_UID), "mode": 0o444}
        )
    for name in ("prometheus", "alertmanager"):
        services[name].pop("ports", None)
    proxy = services["proxy"]
    if isinstance(proxy["networks"], dict):
        proxy["networks"]["monitoring"] = {}
    else:
        proxy["networks"] = sorted({*proxy["networks"], "monitoring"})
    proxy["environment"]["NGINX_EXPORTER_IP"] = OVERLAYS["monitoring"]
    services["nginx-exporter"]["networks"] = ["monitoring"]
    return configs


# pgBackRest's files on each side of the backup path (compose/docker-compose.backup.yml): configs from
# compose/pgbackrest/, and the TLS files each side mounts.
PGBACKREST_DIR = "/etc/pgbackrest"
_BACKUP_CONFIGS = {
    "pgbackrest_db_settings": ("db.conf", f"{PGBACKREST_DIR}/pgbackrest.conf", ("postgres", "backup-agent")),
    "pgbackrest_repo_settings": ("repo.conf", f"{PGBACKREST_DIR}/pgbackrest.conf", ("backup-repo",)),
    "pgbackrest_service": ("service.sh", f"{PGBACKREST_DIR}/service.sh", ("backup-agent", "backup-repo")),
}
_BACKUP_TLS = {
    "postgres": ("ca", "backup-agent"),
    "backup-agent": ("ca", "backup-agent"),
    "backup-repo": ("ca", "backup-repo"),
}


def _backup(services: dict[str, Any], project: str, tls_dir: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The backup overlay's services as Swarm runs them (see the module's docstring); its configs and the TLS
    files' secrets."""
    from ..paths import COMPOSE_DIR

    if tls_dir is None:
        raise ValueError("the backup overlay needs its TLS folder (backup_tls_dir)")
    configs: dict[str, Any] = {}
    for name, (file, target, users) in _BACKUP_CONFIGS.items():
        path = COMPOSE_DIR / "pgbackrest" / file
        configs[name] = {"file": str(path), "name": versioned(project, name, path.read_bytes())}
        for user in users:
            services[user].setdefault("configs", []).append(
                {"source": name, "target": target, "uid": str(model.APP_UID), "mode": 0o444}
            )
    secrets: dict[str, Any] = {}
    for user, peers in _BACKUP_TLS.items():
        for peer in peers:
            for suffix in ("crt", "key") if peer != "ca" else ("crt",):
                tls_file = tls_dir / f"{peer}.{suffix}"
                name = f"backup_tls_{peer.replace('-', '_')}_{suffix}"
                secrets[name] = {"file": str(tls_file), "name": versioned(project, name, tls_file.read_bytes())}
                services[user].setdefault("secrets", []).append(
                    {
                        "source": name,
                        "target": f"{PGBACKREST_DIR}/tls/{tls_file.name}",
                        "uid": str(model.APP_UID),
                        "gid": str(model.APP_UID),
                        "mode": 0o400,
                    }
                )
    for user in ("postgres", "backup-agent"):
        # The async archiver's queue: its compose tmpfs (owned by uid 10001) has no Swarm equivalent.
        services[user].setdefault("environment", {})["PGBACKREST_SPOOL_PATH"] = "/tmp/pgbackrest-spool"
    return configs, secrets


def _targets(service: Mapping[str, Any]) -> dict[str, str]:
    """The secrets Compose mounts at a path of their own (a long-form entry with an absolute target)."""
    return {
        s["source"]: s["target"]
        for s in service.get("secrets") or []
        if isinstance(s, Mapping) and str(s.get("target", "")).startswith("/")
    }


def _sources(service: Mapping[str, Any]) -> set[str]:
    return {s if isinstance(s, str) else s["source"] for s in service.get("secrets") or []}
