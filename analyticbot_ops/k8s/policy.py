"""The audit's k8s report: rules as data, each with an id and what it holds, read from a rendered set.

- AB-K8S-PSS: every pod meets Pod Security "restricted" (the evaluator below: checkov misses a hostPath volume,
  an unsafe sysctl and a seccomp profile set by annotation).
- AB-K8S-WORKLOAD: each service's workload type follows its kind in the model.
- AB-K8S-UPDATES: rolling services roll with nothing unavailable and a disruption budget; singletons never run
  twice.
- AB-K8S-SECRETS: each container mounts the secrets its service reads (model.readers), no other, and no value
  is in the set.
- AB-K8S-PROBES: each long-running container has startup, readiness and liveness probes; the apps' are HTTP.
- AB-K8S-LABELS: every object carries the app.kubernetes.io labels.
- AB-K8S-TOPOLOGY: the (from, to) pairs the NetworkPolicies allow equal the pairs the Compose networks allow."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import model
from ..audit import Finding
from . import network, render
from .validate import WORKLOADS

Manifests = Mapping[str, list[dict[str, Any]]]

# Pod Security "restricted" (Kubernetes' own list): the volume types a pod may use, and the one capability that
# may be added back.
RESTRICTED_VOLUMES = ("configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret")  # fmt: skip
ADDABLE_CAPABILITY = "NET_BIND_SERVICE"
SECCOMP_ALLOWED = ("RuntimeDefault", "Localhost")
OUR_LABELS = ("app.kubernetes.io/instance", "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by")
WORKLOAD_LABELS = (render.NAME, "app.kubernetes.io/component")
# The workload each kind of service is (a kept volume makes a monitor or the repository host a StatefulSet too).
WORKLOAD_OF_KIND = {"data": ("StatefulSet",), "job": ("Job",), "app": ("Deployment",), "proxy": ("Deployment",),
                    "monitor": ("Deployment", "StatefulSet"), "backup": ("StatefulSet",)}  # fmt: skip


def documents(manifests: Manifests) -> list[dict[str, Any]]:
    return [d for file, docs in sorted(manifests.items()) if file != "kustomization.yaml" for d in docs]


def workloads(manifests: Manifests) -> list[dict[str, Any]]:
    return [d for d in documents(manifests) if d.get("kind") in WORKLOADS]


def _template(workload: Mapping[str, Any]) -> Mapping[str, Any]:
    return (workload.get("spec") or {}).get("template") or {}


def _name(document: Mapping[str, Any]) -> str:
    return str((document.get("metadata") or {}).get("name", "?"))


def _service_of(workload: Mapping[str, Any]) -> str:
    """The model's service a workload runs: its name label (a Job is named per release)."""
    labels = (_template(workload).get("metadata") or {}).get("labels") or {}
    return str(labels.get(render.NAME) or labels.get("io.kompose.service") or _name(workload))


# --- Pod Security "restricted" ----------------------------------------------------------------------------------


def restricted_violations(pod: Mapping[str, Any]) -> list[str]:
    """What in a pod spec Pod Security "restricted" (with baseline) refuses, each in a few words."""
    found: list[str] = []
    security = pod.get("securityContext") or {}
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(host):
            found.append(host)
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= set(RESTRICTED_VOLUMES):
            found.append(f"volume {volume.get('name')}: {', '.join(sorted(kinds))}")
    for sysctl in security.get("sysctls") or []:
        if sysctl.get("name") not in render.SAFE_SYSCTLS:
            found.append(f"sysctl {sysctl.get('name')}")
    pod_seccomp = (security.get("seccompProfile") or {}).get("type")
    for container in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
        name = container.get("name")
        context = container.get("securityContext") or {}
        if context.get("privileged"):
            found.append(f"{name}: privileged")
        if any(p.get("hostPort") for p in container.get("ports") or []):
            found.append(f"{name}: hostPort")
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation not false")
        if not context.get("runAsNonRoot", security.get("runAsNonRoot")):
            found.append(f"{name}: runAsNonRoot not true")
        if context.get("runAsUser", security.get("runAsUser")) == 0:
            found.append(f"{name}: runs as uid 0")
        if (context.get("seccompProfile") or {}).get("type", pod_seccomp) not in SECCOMP_ALLOWED:
            found.append(f"{name}: no RuntimeDefault or Localhost seccomp profile")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f"{name}: capabilities not dropped (ALL)")
        added = set(capabilities.get("add") or []) - {ADDABLE_CAPABILITY}
        if added:
            found.append(f"{name}: adds {', '.join(sorted(added))}")
    return found


def pss_findings(manifests: Manifests, _context: Context) -> list[Finding]:
    found = []
    for workload in workloads(manifests):
        violations = restricted_violations(_template(workload).get("spec") or {})
        detail = "; ".join(violations) if violations else "restricted"
        found.append(Finding("AB-K8S-PSS", _name(workload), not violations, detail))
    return found


# --- the model's facts ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """What the rules compare a set with: the Compose networks of the services rendered."""

    memberships: Mapping[str, Iterable[str]]  # each Compose network with its services
    # The secrets this stack has (Compose's top-level `secrets`): a service reads the model's secrets among these
    # (postgres' pgBackRest settings only with the backup overlay). None: every secret the model names.
    declared: frozenset[str] | None = None
    pod_cidr: str = render.Options.pod_cidr  # the pods' network the set was rendered for (k8s.render --pod-cidr)

    @property
    def services(self) -> set[str]:
        return {s for members in self.memberships.values() for s in members}


def context_of(merged: Mapping[str, Any]) -> Context:
    """What the rules compare a set with, from the merged compose config it was rendered from."""
    return Context(memberships_of(merged), frozenset(merged.get("secrets") or {}))


def memberships_of(merged: Mapping[str, Any]) -> dict[str, list[str]]:
    """Each Compose network of a merged config, with the services on it."""
    result: dict[str, list[str]] = {}
    for name, service in (merged.get("services") or {}).items():
        for net in service.get("networks") or {}:
            result.setdefault(net, []).append(name)
    return result


def workload_findings(manifests: Manifests, context: Context) -> list[Finding]:
    found = []
    by_service = {_service_of(w): w for w in workloads(manifests)}
    containers = {
        c.get("name"): _service_of(w)
        for w in workloads(manifests)
        for c in _template(w).get("spec", {}).get("containers", [])
    }
    for service in sorted(context.services):
        kind = model.BY_NAME[service].kind
        if service in render.SIDECARS:
            host = render.SIDECARS[service]
            ok = containers.get(service) == host
            found.append(Finding("AB-K8S-WORKLOAD", service, ok, f"a container of {host}'s pod" if ok else "not beside "
                                 f"{host}: it reads {host}'s volume"))  # fmt: skip
            continue
        workload = by_service.get(service)
        actual = workload.get("kind") if workload else "missing"
        ok = actual in WORKLOAD_OF_KIND[kind]
        found.append(Finding("AB-K8S-WORKLOAD", service, ok, f"{kind}: {actual}"))
    return found


def update_findings(manifests: Manifests, _context: Context) -> list[Finding]:
    found = []
    budgets = [d for d in documents(manifests) if d.get("kind") == "PodDisruptionBudget"]
    for workload in workloads(manifests):
        if workload["kind"] == "Job":
            continue
        service = _service_of(workload)
        spec = workload.get("spec") or {}
        labels = (_template(workload).get("metadata") or {}).get("labels") or {}
        if service in model.BY_NAME and model.BY_NAME[service].rolling:
            strategy = spec.get("strategy") or {}
            unavailable = (strategy.get("rollingUpdate") or {}).get("maxUnavailable")
            budgeted = any(
                all(
                    labels.get(k) == v
                    for k, v in ((b.get("spec") or {}).get("selector") or {}).get("matchLabels", {}).items()
                )
                for b in budgets
            )
            ok = strategy.get("type") == "RollingUpdate" and unavailable == 0 and budgeted
            detail = (
                f"{strategy.get('type', 'RollingUpdate (default: 25% unavailable)')}, maxUnavailable {unavailable}"
                + (", budget" if budgeted else ", no PodDisruptionBudget")
            )
        else:
            if workload["kind"] == "StatefulSet":
                ok = spec.get("replicas", 1) == 1
                detail = f"StatefulSet of {spec.get('replicas', 1)}: stop-first"
            else:
                strategy_type = (spec.get("strategy") or {}).get("type", "RollingUpdate")
                ok = strategy_type == "Recreate" and spec.get("replicas", 1) == 1
                detail = f"{strategy_type}, {spec.get('replicas', 1)} replica(s)"
        found.append(Finding("AB-K8S-UPDATES", _name(workload), ok, detail))
    return found


def _mounted_secret_keys(pod: Mapping[str, Any], container: Mapping[str, Any]) -> set[str]:
    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    keys: set[str] = set()
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount.get("name")) or {}
        if "secret" in volume:
            items = volume["secret"].get("items")
            keys.update(i["key"] for i in items or [])
            if not items:
                keys.add(f"all of {volume['secret'].get('secretName')}")
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "secret" in source:
                items = source["secret"].get("items")
                keys.update(i["key"] for i in items or [])
                if not items:
                    keys.add(f"all of {source['secret'].get('name')}")
    for variable in container.get("env") or []:
        ref = (variable.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            keys.add(str(ref.get("key")))
    for source in container.get("envFrom") or []:
        if "secretRef" in source:
            keys.add(f"all of {source['secretRef'].get('name')}")
    return keys


# Keys of the Secrets that are not the model's (the TLS files), which the rule leaves to the volumes' owners.
_FILE_KEYS = {"tls.crt", "tls.key", "ca.crt"} | {
    f"{p}.{s}" for p in ("backup-agent", "backup-repo") for s in ("crt", "key")
}


def secret_findings(manifests: Manifests, context: Context) -> list[Finding]:
    found = []
    for document in documents(manifests):
        if document.get("kind") == "Secret" and (document.get("data") or document.get("stringData")):
            found.append(Finding("AB-K8S-SECRETS", _name(document), False, "a Secret with its value in the set"))
    for workload in workloads(manifests):
        pod = _template(workload).get("spec") or {}
        for container in pod.get("containers") or []:
            name = str(container.get("name"))
            if name not in model.BY_NAME:
                found.append(Finding("AB-K8S-SECRETS", name, False, "no service of the model"))
                continue
            mounted = _mounted_secret_keys(pod, container) - _FILE_KEYS
            reads = set(model.BY_NAME[name].secrets)
            if context.declared is not None:
                reads &= context.declared
            extra, missing = sorted(mounted - reads), sorted(reads - mounted)
            ok = not extra and not missing
            detail = f"{len(mounted)} secrets, its own" if ok else "; ".join(
                part for part in (f"not its own: {', '.join(extra)}" if extra else "",
                                  f"missing: {', '.join(missing)}" if missing else "") if part
            )  # fmt: skip
            found.append(Finding("AB-K8S-SECRETS", name, ok, detail))
    return found


def probe_findings(manifests: Manifests, _context: Context) -> list[Finding]:
    found = []
    for workload in workloads(manifests):
        if workload["kind"] == "Job":
            continue
        for container in (_template(workload).get("spec") or {}).get("containers") or []:
            name = str(container.get("name"))
            missing = [p for p in ("startupProbe", "readinessProbe", "livenessProbe") if not container.get(p)]
            app = name in model.BY_NAME and model.BY_NAME[name].kind == "app"
            not_http = [p for p in ("startupProbe", "readinessProbe", "livenessProbe")
                        if app and container.get(p) and "httpGet" not in container[p]]  # fmt: skip
            ok = not missing and not not_http
            detail = "startup, readiness, liveness" + (" over HTTP" if app else "")
            if missing:
                detail = f"missing {', '.join(missing)}"
            elif not_http:
                detail = f"not HTTP: {', '.join(not_http)}"
            found.append(Finding("AB-K8S-PROBES", name, ok, detail))
    return found


def label_findings(manifests: Manifests, _context: Context) -> list[Finding]:
    found = []
    for document in documents(manifests):
        labels = (document.get("metadata") or {}).get("labels") or {}
        wanted = [*OUR_LABELS, *(WORKLOAD_LABELS if document.get("kind") in WORKLOADS else ())]
        if document.get("kind") in WORKLOADS:
            pod_labels = (_template(document).get("metadata") or {}).get("labels") or {}
            missing = sorted({k for k in wanted if k not in labels} | {k for k in wanted if k not in pod_labels})
        else:
            missing = [k for k in wanted if k not in labels]
        target = f"{document.get('kind')}/{_name(document)}"
        found.append(
            Finding("AB-K8S-LABELS", target, not missing, f"missing {', '.join(missing)}" if missing else "labelled")
        )
    return found


def topology_findings(manifests: Manifests, context: Context) -> list[Finding]:
    """The pairs the rendered NetworkPolicies allow, between the pods of the set, against the Compose graph (a
    sidecar's pairs are its pod's); and the pods that may reach the internet, against the model."""
    pods = {_service_of(w): (_template(w).get("metadata") or {}).get("labels") or {} for w in workloads(manifests)}
    by_pod = {
        net: sorted({render.SIDECARS.get(s, s) for s in members} & set(pods))
        for net, members in context.memberships.items()
    }
    expected = network.compose_pairs(by_pod)
    allowed = network.allowed_pairs(documents(manifests), pods, context.pod_cidr)
    extra, missing = sorted(allowed - expected), sorted(expected - allowed)
    findings = [Finding("AB-K8S-TOPOLOGY", "namespace", not extra and not missing,
                        f"{len(allowed)} pairs, as Compose" if not extra and not missing else
                        "; ".join(p for p in (f"beyond Compose: {_pairs(extra)}" if extra else "",
                                              f"Compose allows, policies refuse: {_pairs(missing)}" if missing else "")
                                  if p))]  # fmt: skip
    # The way out: Compose's non-internal networks give it to every member, but only the services that talk to
    # Telegram need it (model.INTERNET); every other pod stays inside the cluster.
    out = network.internet_egress(documents(manifests), pods)
    wanted = set(model.INTERNET) & set(pods)
    detail = f"internet: {', '.join(sorted(out)) or 'none'}" + (
        "" if out == wanted else f"; the model says {', '.join(sorted(wanted)) or 'none'}"
    )
    findings.append(Finding("AB-K8S-TOPOLOGY", "internet", out == wanted, detail))
    return findings


def _pairs(pairs: list[tuple[str, str]], shown: int = 6) -> str:
    text = ", ".join(f"{a}->{b}" for a, b in pairs[:shown])
    return text + (f" and {len(pairs) - shown} more" if len(pairs) > shown else "")


@dataclass(frozen=True)
class Rule:
    id: str
    description: str
    check: Callable[[Manifests, Context], list[Finding]]


RULES: tuple[Rule, ...] = (
    Rule("AB-K8S-PSS", 'every pod meets Pod Security "restricted"', pss_findings),
    Rule("AB-K8S-WORKLOAD", "each service's workload type follows its kind", workload_findings),
    Rule("AB-K8S-UPDATES", "rolling services roll with a budget; singletons never run twice", update_findings),
    Rule(
        "AB-K8S-SECRETS", "each container mounts its own secrets, no other, and no value is rendered", secret_findings
    ),
    Rule("AB-K8S-PROBES", "startup, readiness and liveness probes; HTTP for the apps", probe_findings),
    Rule("AB-K8S-LABELS", "app.kubernetes.io labels on every object", label_findings),
    Rule("AB-K8S-TOPOLOGY", "the pairs the network policies allow are the Compose networks' pairs", topology_findings),
)


def findings(manifests: Manifests, context: Context) -> list[Finding]:
    """Every rule's findings on a set, in the rules' order."""
    return [f for rule in RULES for f in rule.check(manifests, context)]
