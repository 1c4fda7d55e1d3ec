"""Kubernetes manifests rendered from the same merged compose files the Swarm renderer reads, and the model.

What each Compose fact becomes (and what has no place under Pod Security "restricted", recorded on the object
as an `analyticbot.io/exception.*` annotation with its reason):
- a service with a volume of its own is a StatefulSet with a headless Service and a claim per volume; a job is
  a Job named per release; the rest are Deployments. The backup agent, which reads postgres' data volume and
  socket, is a second container in postgres' pod (a claim is one node's: Compose shares the volume instead).
- `rolling` services (model) get RollingUpdate with maxUnavailable 0, two replicas and a PodDisruptionBudget;
  singletons get Recreate (a StatefulSet of one replaces its pod stop-first, which is the same).
- healthchecks become startup, readiness and liveness probes: httpGet on the apps' /health/live and
  /health/ready (no Python exec), the exporters' pages; a TCP connect where the page needs a password
  (Prometheus, Alertmanager) or listens on loopback only (the proxy's /healthz); the data services' own CLI.
- hardening: uid/gid 10001, fsGroup (secret files 0440 readable by the group), no privilege escalation, every
  capability dropped, seccomp RuntimeDefault, read-only root; each tmpfs an emptyDir in memory.
- secrets: each a Secret of its own (`k8s.secrets` creates them from secrets/, never this file); a pod mounts
  only its readers' items (model) at /run/secrets, or where Compose mounts it.
- bind mounts: redis.conf, pgBackRest's files and the monitoring files become ConfigMaps; the TLS pair a
  kubernetes.io/tls Secret; the backup path's certificates a Secret.
- networks: labels, and the policies of network.py.
- deploy.resources.limits: limits, with requests below them; stop_grace_period: terminationGracePeriodSeconds."""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import model
from ..errors import BadInput
from ..monitoring.config import mounted_files
from ..paths import COMPOSE_DIR
from . import network

PART_OF = "analyticbot"
MANAGED_BY = "analyticbot-ops"
NAME = "app.kubernetes.io/name"
INSTANCE = "app.kubernetes.io/instance"
EXCEPTION = "analyticbot.io/exception."
SECRETS_TARGET = "/run/secrets"
TLS_TARGET = "/etc/nginx/tls"
# The sidecar of each pod: the backup agent shares postgres' data volume and socket folder.
SIDECARS = {"backup-agent": "postgres"}
# Volumes that hold nothing worth keeping here: the ACME webroot is certbot's, and on Kubernetes a certificate
# comes from cert-manager (or `k8s.secrets`), so the proxy gets an empty folder.
EPHEMERAL_VOLUMES = {"acme-webroot", "pgsocket"}
# Each kept volume's claim size: the database and its repositories grow with the data, the rest are bounded
# (Prometheus' retention size is 2 GB).
STORAGE = {
    "pgdata": "10Gi",
    "pgbackrest": "20Gi",
    "pgbackrest-repo": "20Gi",
    "redisdata": "1Gi",
    "prometheus-data": "4Gi",
    "alertmanager-data": "256Mi",
}
ROLLING_REPLICAS = 2
# Pod Security "restricted" allows only the safe sysctls (the Pod Security Standards' list): the rest are removed,
# with the reason.
SAFE_SYSCTLS = ("kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes")  # fmt: skip
# What Compose sets and Kubernetes has no field for, said once per object that had it.
EXCEPTIONS = {
    "pids_limit": "no per-pod field: the kubelet's --pod-max-pids sets it for the node",
    "stop_signal": "no field before ContainerStopSignals (alpha in 1.33): the container gets SIGTERM and the grace"
    " period",
    "logging": "rotation is the kubelet's (containerLogMaxSize, containerLogMaxFiles)",
    "depends_on": "no start order: each service waits for its dependencies itself, as on Swarm",
}


@dataclass(frozen=True)
class Options:
    """What the cluster decides and Compose does not say."""

    namespace: str
    images: Mapping[str, str]  # each image variable's reference (by digest when a registry was given)
    release: str  # names the migrate Job: a new release runs it again
    proxy_service_type: str = "LoadBalancer"
    # The pods' addresses: the apps trust X-Forwarded-* from them (the proxy has no fixed address here) and the
    # proxy's stub_status answers them (the network policies say which pods reach either).
    pod_cidr: str = "10.0.0.0/8"
    # nginx's resolver applies no search domain: the proxy names its upstreams in full (api.NAMESPACE.svc.DOMAIN).
    cluster_domain: str = "cluster.local"
    extra_labels: Mapping[str, str] = field(default_factory=dict)


def common_labels(name: str, options: Options) -> dict[str, str]:
    return {
        NAME: name,
        INSTANCE: options.namespace,
        "app.kubernetes.io/component": model.BY_NAME[name].kind if name in model.BY_NAME else "config",
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        **options.extra_labels,
    }


def _meta(name: str, options: Options, owner: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": options.namespace, "labels": common_labels(owner or name, options), **extra}


def secret_name(secret: str) -> str:
    """A secret's Kubernetes name (DNS-1123: dashes, not underscores); its one key keeps the file's name."""
    return secret.replace("_", "-")


_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30}


def _quantity_memory(value: object) -> str:
    """A Compose memory size (512M is 512 MiB; Compose v2 prints bytes) as a Kubernetes quantity: in Mi when it
    is whole mebibytes (so that half of it is whole too), else in bytes."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([bkmgBKMG]?)[bB]?", str(value))
    if not match:
        raise BadInput(f"memory limit {value!r} is not a size")
    size = round(float(match.group(1)) * _UNITS[match.group(2).lower()])
    return f"{size // 2**20}Mi" if size % 2**20 == 0 else str(size)


def _millicores(value: object) -> int:
    return round(float(str(value)) * 1000)


def _resources(service: Mapping[str, Any]) -> dict[str, Any]:
    limits = ((service.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    cpu = _millicores(limits.get("cpus", 0.5))
    memory = _quantity_memory(limits.get("memory", "128M"))
    unit = "Mi" if memory.endswith("Mi") else ""  # _quantity_memory's two forms: mebibytes or bytes
    number = memory.removesuffix(unit)
    # A quarter of the CPU limit is reserved (CPU is lent out when idle); half the memory, since memory is not.
    return {
        "requests": {"cpu": f"{max(cpu // 4, 10)}m", "memory": f"{int(number) // 2}{unit}"},
        "limits": {"cpu": f"{cpu}m", "memory": memory},
    }


def _dollars(values: list[Any]) -> list[str]:
    """Compose's `$$` (a literal dollar for the container's shell) as the single one Kubernetes passes on."""
    return [str(v).replace("$$", "$") for v in values]


def _volume_name(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "root"


def _probes(name: str, service: Mapping[str, Any]) -> dict[str, Any]:
    spec = model.BY_NAME[name]
    ports = model.PORTS[name]
    timing = {"periodSeconds": 10, "timeoutSeconds": 3, "failureThreshold": 3}
    # Starting: checked every 2 s for as long as Compose's start_period allows (initdb, migrations).
    start = _seconds((service.get("healthcheck") or {}).get("start_period", "60s"))
    starting = {"periodSeconds": 2, "timeoutSeconds": 3, "failureThreshold": max(start // 2, 5)}
    if spec.kind == "app":
        live = {"httpGet": {"path": "/health/live", "port": "http"}}
        ready = {"httpGet": {"path": "/health/ready", "port": "http"}}
        return {"startupProbe": {**live, **starting}, "readinessProbe": {**ready, **timing},
                "livenessProbe": {**live, **timing}}  # fmt: skip
    if name in ("prometheus", "alertmanager"):
        check: dict[str, Any] = {"tcpSocket": {"port": "http"}}  # every page asks for the password
    elif name == "proxy":
        check = {"tcpSocket": {"port": "https"}}  # its /healthz listens on loopback only
    elif "metrics" in ports or name == "blackbox-exporter":
        check = {"httpGet": {"path": "/", "port": next(iter(ports))}}
    else:
        # The data services' and the backup path's own checks (not Python): pg_isready, redis-cli, a file.
        test = [str(a).replace("$$", "$") for a in (service.get("healthcheck") or {}).get("test", [])]
        check = {"exec": {"command": test[1:] if test and test[0] in ("CMD", "CMD-SHELL") else test}}
        if test and test[0] == "CMD-SHELL":
            check = {"exec": {"command": ["sh", "-c", " ".join(test[1:])]}}
    return {"startupProbe": {**check, **starting}, "readinessProbe": {**check, **timing},
            "livenessProbe": {**check, **timing}}  # fmt: skip


def _seconds(value: object) -> int:
    """A Compose duration (1m30s, 10s; a bare number is seconds) in whole seconds."""
    text = str(value)
    if text.isdigit():
        return int(text)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return round(sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)))


@dataclass
class _Pod:
    """A pod being assembled: its containers, volumes and exceptions."""

    containers: list[dict[str, Any]] = field(default_factory=list)
    volumes: dict[str, dict[str, Any]] = field(default_factory=dict)
    claims: list[str] = field(default_factory=list)
    exceptions: dict[str, str] = field(default_factory=dict)
    sysctls: dict[str, str] = field(default_factory=dict)
    networks: set[str] = field(default_factory=set)
    grace: int = 0


class _Renderer:
    def __init__(self, merged: Mapping[str, Any], options: Options) -> None:
        self.merged = merged
        self.options = options
        self.services: Mapping[str, Any] = merged["services"]
        self.configmaps: dict[str, dict[str, str]] = {}
        self.secrets_used: set[str] = set()

    # --- containers -------------------------------------------------------------------------------------------
    def container(self, name: str, pod: _Pod) -> dict[str, Any]:
        service = self.services[name]
        main = not pod.containers
        prefix = "" if main else f"{name}-"
        container: dict[str, Any] = {"name": name, "image": self.options.images[model.BY_NAME[name].image_variable]}
        container["imagePullPolicy"] = "Always"
        if service.get("entrypoint"):
            container["command"] = _dollars(list(service["entrypoint"]))
        if service.get("command"):
            container["args"] = _dollars(list(service["command"]))
        environment = {str(k): "" if v is None else str(v) for k, v in (service.get("environment") or {}).items()}
        self._environment(name, environment)
        if environment:
            container["env"] = [{"name": k, "value": environment[k]} for k in sorted(environment)]
        ports = model.PORTS[name]
        if ports:
            container["ports"] = [{"name": p, "containerPort": n, "protocol": "TCP"} for p, n in ports.items()]
        if model.BY_NAME[name].kind != "job":
            container.update(_probes(name, service))
        container["resources"] = _resources(service)
        container["securityContext"] = {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": bool(service.get("read_only", True)),
            "runAsNonRoot": True,
            "runAsUser": model.APP_UID,
            "runAsGroup": model.APP_UID,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        mounts = self._mounts(name, service, pod, prefix)
        if mounts:
            container["volumeMounts"] = sorted(mounts, key=lambda m: m["mountPath"])
        for key, reason in EXCEPTIONS.items():
            if key in service and key != "depends_on":
                pod.exceptions[key] = reason
        if service.get("depends_on"):
            pod.exceptions["depends_on"] = EXCEPTIONS["depends_on"]
        for sysctl, value in sorted((service.get("sysctls") or {}).items()):
            if sysctl in SAFE_SYSCTLS:
                pod.sysctls[sysctl] = str(value)
            else:
                pod.exceptions[f"sysctl.{sysctl}"] = 'not a safe sysctl: Pod Security "restricted" refuses it'
        pod.networks.update(service.get("networks") or {})
        pod.grace = max(pod.grace, _seconds(service.get("stop_grace_period", "0s")))
        pod.containers.append(container)
        return container

    def _environment(self, name: str, environment: dict[str, str]) -> None:
        """Compose's addresses, which Kubernetes gives differently."""
        if "FORWARDED_ALLOW_IPS" in environment:
            environment["FORWARDED_ALLOW_IPS"] = self.options.pod_cidr
        if name == "proxy":
            environment["NGINX_EXPORTER_IP"] = self.options.pod_cidr if "nginx-exporter" in self.services else ""
            environment["INTERNAL_NAME"] = "proxy"  # the edge probe reaches the proxy by its Service's name
            environment["PUBLIC_HTTPS_PORT"] = "443"  # proxy-public's port, whatever Compose publishes
            environment["UPSTREAM_DOMAIN"] = f"{self.options.namespace}.svc.{self.options.cluster_domain}"
        if name == "prometheus":
            environment["PUBLIC_NAME"] = "proxy"

    def _mounts(self, name: str, service: Mapping[str, Any], pod: _Pod, prefix: str) -> list[dict[str, Any]]:
        mounts: list[dict[str, Any]] = []
        for entry in service.get("tmpfs") or []:
            target = str(entry).split(":", 1)[0]
            volume = f"{prefix}{_volume_name(target)}"
            pod.volumes[volume] = {"name": volume, "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}
            mounts.append({"name": volume, "mountPath": target})
        for entry in service.get("volumes") or []:
            mounts.extend(self._volume(name, entry, pod))
        mounts.extend(self._secret_mounts(name, service, pod, prefix))
        return mounts

    def _volume(self, name: str, entry: str | Mapping[str, Any], pod: _Pod) -> list[dict[str, Any]]:
        if isinstance(entry, Mapping):  # Compose v2 prints the long form
            source, target = str(entry.get("source", "")), str(entry["target"])
            read_only = bool(entry.get("read_only"))
        else:
            source, target, *mode = entry.split(":")
            read_only = "ro" in mode
        mount = {"name": source, "mountPath": target} | ({"readOnly": True} if read_only else {})
        if not source.startswith("/"):
            if source in EPHEMERAL_VOLUMES:
                pod.volumes[source] = {"name": source, "emptyDir": {}}
            elif source not in pod.claims:
                pod.claims.append(source)
            return [mount]
        path = Path(source)
        if path == COMPOSE_DIR / "monitoring":
            volume = f"{name}-config"
            items = [
                {"key": f.name, "path": f.target.removeprefix(f"{target}/")}
                for f in mounted_files()
                if f.service == name
            ]
            self._configmap("monitoring", {f.name: f.source.read_text() for f in mounted_files()})
            pod.volumes[volume] = {"name": volume, "configMap": {"name": "monitoring", "items": items}}
            return [{"name": volume, "mountPath": target, "readOnly": True}]
        if path == COMPOSE_DIR / "redis" / "redis.conf":
            self._configmap("redis", {"redis.conf": path.read_text()})
            pod.volumes["redis-conf"] = {"name": "redis-conf", "configMap": {"name": "redis"}}
            return [{"name": "redis-conf", "mountPath": target, "subPath": "redis.conf", "readOnly": True}]
        if path.parent == COMPOSE_DIR / "pgbackrest":
            self._configmap("pgbackrest", {f.name: f.read_text() for f in sorted(path.parent.glob("*.*"))})
            volume = "pgbackrest-config"
            pod.volumes[volume] = {"name": volume, "configMap": {"name": "pgbackrest"}}
            return [{"name": volume, "mountPath": target, "subPath": path.name, "readOnly": True}]
        if path.parent.name == "backup-tls":
            self.secrets_used.add("backup-tls")
            volume = f"{name}-backup-tls"
            volume_spec = pod.volumes.setdefault(
                volume,
                {"name": volume, "secret": {"secretName": "backup-tls", "defaultMode": 0o440, "items": []}},
            )
            volume_spec["secret"]["items"].append({"key": path.name, "path": path.name})
            volume_spec["secret"]["items"].sort(key=lambda i: i["key"])
            if path.name == "ca.crt":
                return [{"name": volume, "mountPath": str(Path(target).parent), "readOnly": True}]
            return []
        if name == "proxy" and target == TLS_TARGET:
            self.secrets_used.add("proxy-tls")
            items = [{"key": "tls.crt", "path": "fullchain.pem"}, {"key": "tls.key", "path": "privkey.pem"}]
            pod.volumes["tls"] = {
                "name": "tls",
                "secret": {"secretName": "proxy-tls", "defaultMode": 0o440, "items": items},
            }
            return [{"name": "tls", "mountPath": target, "readOnly": True}]
        raise ValueError(f"{name}: no Kubernetes form for the bind mount {source}")

    def _secret_mounts(self, name: str, service: Mapping[str, Any], pod: _Pod, prefix: str) -> list[dict[str, Any]]:
        """The service's own secrets (the model's readers), each a Secret's one key, at /run/secrets or where
        Compose mounts it."""
        by_folder: dict[str, list[tuple[str, str]]] = {}
        for entry in service.get("secrets") or []:
            source = entry if isinstance(entry, str) else entry["source"]
            target = SECRETS_TARGET + "/" + source
            if isinstance(entry, Mapping) and str(entry.get("target", "")).startswith("/"):
                target = str(entry["target"])
            folder, _, file = target.rpartition("/")
            by_folder.setdefault(folder, []).append((source, file))
            self.secrets_used.add(secret_name(source))
        mounts = []
        for folder, files in sorted(by_folder.items()):
            volume = f"{prefix}secrets" if folder == SECRETS_TARGET else f"{prefix}{_volume_name(folder)}"
            sources = [
                {"secret": {"name": secret_name(source), "items": [{"key": source, "path": file}]}}
                for source, file in sorted(files)
            ]
            pod.volumes[volume] = {"name": volume, "projected": {"defaultMode": 0o440, "sources": sources}}
            mounts.append({"name": volume, "mountPath": folder, "readOnly": True})
        return mounts

    def _configmap(self, name: str, data: Mapping[str, str]) -> None:
        self.configmaps.setdefault(name, {}).update(data)

    # --- workloads --------------------------------------------------------------------------------------------
    def pod(self, name: str) -> _Pod:
        pod = _Pod()
        self.container(name, pod)
        for sidecar, host in SIDECARS.items():
            if host == name and sidecar in self.services:
                self.container(sidecar, pod)
        return pod

    def pod_template(self, name: str, pod: _Pod) -> dict[str, Any]:
        labels = {**common_labels(name, self.options), **network.network_labels(pod.networks)}
        annotations = {f"{EXCEPTION}{key}": reason for key, reason in sorted(pod.exceptions.items())}
        security: dict[str, Any] = {
            "runAsNonRoot": True,
            "runAsUser": model.APP_UID,
            "runAsGroup": model.APP_UID,
            "fsGroup": model.APP_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        if pod.sysctls:
            security["sysctls"] = [{"name": k, "value": v} for k, v in sorted(pod.sysctls.items())]
        spec: dict[str, Any] = {
            "automountServiceAccountToken": False,  # no service of ours talks to the API server
            "enableServiceLinks": False,  # names come from DNS, as on Compose, not from injected variables
            "securityContext": security,
            "containers": pod.containers,
        }
        if pod.grace:
            spec["terminationGracePeriodSeconds"] = pod.grace
        if pod.volumes:
            spec["volumes"] = [pod.volumes[v] for v in sorted(pod.volumes)]
        metadata: dict[str, Any] = {"labels": labels}
        if annotations:
            metadata["annotations"] = annotations
        return {"metadata": metadata, "spec": spec}

    def selector(self, name: str) -> dict[str, Any]:
        return {"matchLabels": {NAME: name, INSTANCE: self.options.namespace}}

    def workload(self, name: str) -> list[dict[str, Any]]:
        spec = model.BY_NAME[name]
        pod = self.pod(name)
        template = self.pod_template(name, pod)
        documents: list[dict[str, Any]] = []
        if spec.kind == "job":
            job_name = f"{name}-{self.options.release}"
            template["spec"]["restartPolicy"] = "OnFailure"
            documents.append({
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": _meta(job_name, self.options, owner=name),
                "spec": {"backoffLimit": 10, "ttlSecondsAfterFinished": 86400, "template": template},
            })  # fmt: skip
            return documents
        if pod.claims:
            documents.append(self.service(name, headless=True))
            documents.append({
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": _meta(name, self.options),
                "spec": {
                    "serviceName": name,
                    "replicas": 1,
                    # One replica: its pod is replaced stop-first, as Recreate does for a Deployment.
                    "updateStrategy": {"type": "RollingUpdate"},
                    "podManagementPolicy": "OrderedReady",
                    "selector": self.selector(name),
                    "template": template,
                    "volumeClaimTemplates": [self.claim(c, name) for c in sorted(pod.claims)],
                },
            })  # fmt: skip
        else:
            strategy: dict[str, Any] = (
                {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
                if spec.rolling
                else {"type": "Recreate"}
            )
            if model.PORTS[name]:
                documents.append(self.service(name))
            documents.append({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": _meta(name, self.options),
                "spec": {
                    "replicas": ROLLING_REPLICAS if spec.rolling else 1,
                    "strategy": strategy,
                    "selector": self.selector(name),
                    "template": template,
                },
            })  # fmt: skip
        if spec.rolling:
            documents.append({
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": _meta(name, self.options),
                "spec": {"minAvailable": 1, "selector": self.selector(name)},
            })  # fmt: skip
        for sidecar, host in SIDECARS.items():
            if host == name and sidecar in self.services:
                documents.append(self.service(sidecar, pod_of=name))
        if name == "proxy":
            documents.append(self.public_service())
        return documents

    def claim(self, volume: str, owner: str) -> dict[str, Any]:
        return {
            "metadata": {"name": volume, "labels": common_labels(owner, self.options)},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": STORAGE[volume]}}},
        }

    def service(self, name: str, *, headless: bool = False, pod_of: str | None = None) -> dict[str, Any]:
        ports = model.PORTS[name]
        spec: dict[str, Any] = {
            "selector": self.selector(pod_of or name)["matchLabels"],
            "ports": [{"name": p, "port": n, "targetPort": p, "protocol": "TCP"} for p, n in ports.items()],
        }
        if headless:
            spec = {"clusterIP": "None", **spec}
        return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, self.options), "spec": spec}

    def public_service(self) -> dict[str, Any]:
        """The proxy as the world reaches it: ports 80 and 443, through a Service of the cluster's type."""
        spec: dict[str, Any] = {
            "type": self.options.proxy_service_type,
            "selector": self.selector("proxy")["matchLabels"],
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"},
            ],
        }
        if self.options.proxy_service_type in ("LoadBalancer", "NodePort"):
            spec["externalTrafficPolicy"] = "Local"  # keeps the client's address, as Compose and Swarm do
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta("proxy-public", self.options, owner="proxy"),
            "spec": spec,
        }


def render(merged: Mapping[str, Any], options: Options) -> dict[str, list[dict[str, Any]]]:
    """The manifest set: each file's name with its documents (kustomization.yaml lists them all). Never reads a
    secret's value: secrets are named, and `k8s.secrets` makes them."""
    merged = copy.deepcopy(dict(merged))
    renderer = _Renderer(merged, options)
    files: dict[str, list[dict[str, Any]]] = {
        "namespace.yaml": [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": options.namespace,
                    "labels": {
                        INSTANCE: options.namespace,
                        "app.kubernetes.io/part-of": PART_OF,
                        "app.kubernetes.io/managed-by": MANAGED_BY,
                        # The API server itself refuses a pod that is not "restricted".
                        "pod-security.kubernetes.io/enforce": "restricted",
                        "pod-security.kubernetes.io/enforce-version": "latest",
                    },
                },
            },
            # No pod of ours talks to the API server: the namespace's default account carries no token either.
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "default", "namespace": options.namespace, "labels": _config_labels(options)},
                "automountServiceAccountToken": False,
            },
        ]
    }
    for spec in model.SERVICES:
        if spec.name in merged["services"] and spec.name not in SIDECARS:
            files[f"{spec.name}.yaml"] = renderer.workload(spec.name)
    files["configmaps.yaml"] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": options.namespace, "labels": _config_labels(options)},
            "data": dict(sorted(data.items())),
        }
        for name, data in sorted(renderer.configmaps.items())
    ]
    memberships: dict[str, list[str]] = {}
    for name, service in merged["services"].items():
        for net in service.get("networks") or {}:
            memberships.setdefault(net, []).append(SIDECARS.get(name, name))
    files["network-policies.yaml"] = network.policies(memberships, options.namespace, _config_labels(options))
    files["kustomization.yaml"] = [
        {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "namespace": options.namespace,
            "resources": sorted(f for f in files if f != "kustomization.yaml"),
        }
    ]
    return files


def _config_labels(options: Options) -> dict[str, str]:
    return {
        INSTANCE: options.namespace,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        **options.extra_labels,
    }


class _Dumper(yaml.SafeDumper):
    """Each document written out whole: no YAML anchors for the probes a container repeats."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(documents: list[dict[str, Any]]) -> str:
    """One manifest file's text: its documents in order, keys in the order rendered."""
    return yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def secrets_used(files: Mapping[str, list[dict[str, Any]]]) -> set[str]:
    """Every Secret the rendered pods name."""
    names: set[str] = set()
    for documents in files.values():
        for document in documents:
            for volume in _pod_spec(document).get("volumes") or []:
                if "secret" in volume:
                    names.add(volume["secret"]["secretName"])
                for source in (volume.get("projected") or {}).get("sources") or []:
                    if "secret" in source:
                        names.add(source["secret"]["name"])
    return names


def _pod_spec(document: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = document.get("spec") or {}
    template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template") or {}
    return template.get("spec") or {}


def release_name(images: Mapping[str, str]) -> str:
    """The release's name for the migrate Job: the api image's reference, hashed (a new image, a new Job)."""
    return hashlib.sha256(images[model.BY_NAME["migrate"].image_variable].encode()).hexdigest()[:10]
