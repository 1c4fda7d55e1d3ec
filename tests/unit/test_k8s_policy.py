"""The audit's k8s rules (k8s/policy.py) against sets whose answer is known: the prod set passes every rule and
every rule has a say on it; what Kompose makes of the same compose files fails every rule; one change on the
prod set fails exactly the rule it is about; Pod Security "restricted" is evaluated as Kubernetes does
(including what checkov misses); and the network policies are read back as Kubernetes reads them (ipBlock
peers can hold pods, a policy without policyTypes defaults them), so the topology equals Compose's and a missing
deny or a missing tier is seen."""

from __future__ import annotations

import base64
import copy
import functools
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from analyticbot_ops.k8s import network, policy
from tests.unit import k8s_support

Manifests = dict[str, list[dict[str, Any]]]
RULE_IDS = [rule.id for rule in policy.RULES]


@functools.cache
def _prod() -> Manifests:
    return k8s_support.render_merged("prod")


@functools.cache
def _context() -> policy.Context:
    return policy.Context(policy.memberships_of(k8s_support.merged("prod")))


def _failed(files: Manifests, context: policy.Context | None = None) -> list[Any]:
    return [f for f in policy.findings(files, context or _context()) if not f.ok]


def _object(files: Manifests, file: str, kind: str, name: str | None = None) -> dict[str, Any]:
    name = name or file.removesuffix(".yaml")
    return next(d for d in files[file] if d["kind"] == kind and d["metadata"]["name"] == name)


def _without_policies(files: Manifests, *names: str) -> Manifests:
    files = copy.deepcopy(files)
    files["network-policies.yaml"] = [p for p in files["network-policies.yaml"] if p["metadata"]["name"] not in names]
    return files


def test_the_prod_set_passes_every_rule_and_every_rule_has_a_say_on_it() -> None:
    found = policy.findings(_prod(), _context())
    assert [f for f in found if not f.ok] == []
    counts = {rule: sum(1 for f in found if f.check == rule) for rule in RULE_IDS}
    assert all(counts.values()), counts
    # Each service of the model is judged by the workload and secrets rules, the sidecar too.
    services = set(_context().services)
    assert {f.target for f in found if f.check == "AB-K8S-WORKLOAD"} == services
    assert {f.target for f in found if f.check == "AB-K8S-SECRETS"} == services


# --- what Kompose makes of the same compose files -----------------------------------------------------------------

KOMPOSE_SERVICE = "io.kompose.service"
KOMPOSE_NETWORK = "io.kompose.network/"


def _kompose_name(name: str) -> str:
    return name.replace("_", "-")


def _kompose_probe(healthcheck: Mapping[str, Any]) -> dict[str, Any]:
    test = [str(a) for a in healthcheck.get("test") or []]
    command = ["/bin/sh", "-c", " ".join(test[1:])] if test[:1] == ["CMD-SHELL"] else test[1:]
    return {"exec": {"command": command}, "periodSeconds": 1, "timeoutSeconds": 3, "failureThreshold": 3}


def kompose(merged: Mapping[str, Any]) -> Manifests:
    """What `kompose convert` writes for a merged compose config: a Deployment per service labelled
    io.kompose.service (no securityContext, the healthcheck as an exec livenessProbe only, every secret to every
    container as an environment variable), each secret a Secret holding its value, each named volume a claim and
    each bind mount a hostPath, and per network an ingress-only NetworkPolicy (no policyTypes, no default deny)
    between the pods labelled with it. No PodDisruptionBudget, no app.kubernetes.io label."""
    files: Manifests = {}
    secrets = sorted(merged.get("secrets") or {})
    for secret in secrets:
        value = base64.b64encode(f"value of {secret}".encode()).decode()
        files[f"{_kompose_name(secret)}-secret.yaml"] = [{
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": _kompose_name(secret)},
            "type": "Opaque", "data": {secret: value},
        }]  # fmt: skip
    for name, service in sorted(merged["services"].items()):
        labels = {KOMPOSE_SERVICE: name}
        pod_labels = {**labels, **{f"{KOMPOSE_NETWORK}{net}": "true" for net in service.get("networks") or {}}}
        container: dict[str, Any] = {"name": name, "image": service["image"]}
        if service.get("entrypoint"):
            container["command"] = list(service["entrypoint"])
        if service.get("command"):
            container["args"] = list(service["command"])
        environment = service.get("environment") or {}
        container["env"] = [{"name": k, "value": str(v)} for k, v in sorted(environment.items())] + [
            {"name": s.upper(), "valueFrom": {"secretKeyRef": {"name": _kompose_name(s), "key": s}}} for s in secrets
        ]
        ports = []
        for published in service.get("ports") or []:
            host, target = str(published).split("/")[0].rsplit(":", 2)[-2:]
            ports.append({"containerPort": int(target), "hostPort": int(host), "protocol": "TCP"})
        if ports:
            container["ports"] = ports
        if service.get("healthcheck"):
            container["livenessProbe"] = _kompose_probe(service["healthcheck"])
        volumes, mounts = [], []
        for index, entry in enumerate(service.get("volumes") or []):
            source, target, *_ = str(entry).split(":")
            volume = f"{name}-claim{index}"
            if source.startswith("/"):
                volumes.append({"name": volume, "hostPath": {"path": source}})
            else:
                volumes.append({"name": volume, "persistentVolumeClaim": {"claimName": volume}})
                files[f"{volume}-persistentvolumeclaim.yaml"] = [{
                    "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": volume, "labels": labels},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "100Mi"}}},
                }]  # fmt: skip
            mounts.append({"name": volume, "mountPath": target})
        for index, entry in enumerate(service.get("tmpfs") or []):
            volume = f"{name}-tmpfs{index}"
            volumes.append({"name": volume, "emptyDir": {"medium": "Memory"}})
            mounts.append({"name": volume, "mountPath": str(entry).split(":")[0]})
        if mounts:
            container["volumeMounts"] = mounts
        spec: dict[str, Any] = {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": pod_labels},
                         "spec": {"containers": [container], "restartPolicy": "Always", "volumes": volumes}},
        }  # fmt: skip
        if volumes:
            spec["strategy"] = {"type": "Recreate"}
        files[f"{name}-deployment.yaml"] = [
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels}, "spec": spec}
        ]
        if ports:
            files[f"{name}-service.yaml"] = [{
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": labels},
                "spec": {"selector": labels, "ports": [{"name": str(p["hostPort"]), "port": p["hostPort"],
                                                        "targetPort": p["containerPort"]} for p in ports]},
            }]  # fmt: skip
    for net in sorted(merged.get("networks") or {}):
        members = {"matchLabels": {f"{KOMPOSE_NETWORK}{net}": "true"}}
        files[f"{net}-networkpolicy.yaml"] = [{
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": net},
            "spec": {"podSelector": members, "ingress": [{"from": [{"podSelector": members}]}]},
        }]  # fmt: skip
    return files


@functools.cache
def _kompose_findings() -> tuple[Any, ...]:
    return tuple(policy.findings(kompose(k8s_support.merged("prod")), _context()))


@pytest.mark.parametrize("rule", RULE_IDS)
def test_each_rule_fails_on_what_kompose_makes_of_the_compose_files(rule: str) -> None:
    failed = [f for f in _kompose_findings() if f.check == rule and not f.ok]
    assert failed, f"{rule} passes what Kompose makes"


def test_on_kompose_output_the_rules_say_why() -> None:
    failed = {(f.check, f.target): f.detail for f in _kompose_findings() if not f.ok}
    assert "allowPrivilegeEscalation not false" in failed[("AB-K8S-PSS", "proxy")]
    assert ": hostPath" in failed[("AB-K8S-PSS", "redis")]  # redis.conf, a bind mount
    assert "proxy: hostPort" in failed[("AB-K8S-PSS", "proxy")]
    assert failed[("AB-K8S-WORKLOAD", "postgres")] == "data: Deployment"
    assert failed[("AB-K8S-WORKLOAD", "backup-agent")] == "not beside postgres: it reads postgres's volume"
    assert "no PodDisruptionBudget" in failed[("AB-K8S-UPDATES", "api")]
    assert failed[("AB-K8S-SECRETS", "postgres-password")] == "a Secret with its value in the set"
    assert "not its own: " in failed[("AB-K8S-SECRETS", "proxy")]
    assert failed[("AB-K8S-PROBES", "api")] == "missing startupProbe, readinessProbe"
    assert "app.kubernetes.io/instance" in failed[("AB-K8S-LABELS", "Deployment/api")]
    # Ingress-only policies, read as Kubernetes reads them (no policyTypes: Ingress), hold each tier's pods to
    # their peers; but the backup agent, a pod of its own here, reaches what only postgres' pod should.
    assert failed[("AB-K8S-TOPOLOGY", "namespace")].startswith("beyond Compose: backup-agent->backup-repo")


# --- one change, one rule -----------------------------------------------------------------------------------------


def _privileged(files: Manifests) -> None:
    _object(files, "api.yaml", "Deployment")["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "privileged"
    ] = True


def _api_as_statefulset(files: Manifests) -> None:
    _object(files, "api.yaml", "Deployment")["kind"] = "StatefulSet"


def _surge_down(files: Manifests) -> None:
    _object(files, "api.yaml", "Deployment")["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] = 1


def _no_budget(files: Manifests) -> None:
    files["api.yaml"] = [d for d in files["api.yaml"] if d["kind"] != "PodDisruptionBudget"]


def _borrowed_secret(files: Manifests) -> None:
    volumes = _object(files, "mtproto.yaml", "Deployment")["spec"]["template"]["spec"]["volumes"]
    secrets = next(v for v in volumes if v["name"] == "secrets")
    secrets["projected"]["sources"].append(
        {"secret": {"name": "jwt-secret-key", "items": [{"key": "jwt_secret_key", "path": "jwt_secret_key"}]}}
    )


def _no_readiness(files: Manifests) -> None:
    del _object(files, "bot.yaml", "Deployment")["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]


def _unlabelled(files: Manifests) -> None:
    del files["configmaps.yaml"][0]["metadata"]["labels"]["app.kubernetes.io/part-of"]


def _no_database_tier(files: Manifests) -> None:
    files.update(_without_policies(files, "network-database"))


@pytest.mark.parametrize(
    ("change", "rule", "target"),
    [
        (_privileged, "AB-K8S-PSS", "api"),
        (_api_as_statefulset, "AB-K8S-WORKLOAD", "api"),
        (_surge_down, "AB-K8S-UPDATES", "api"),
        (_no_budget, "AB-K8S-UPDATES", "api"),
        (_borrowed_secret, "AB-K8S-SECRETS", "mtproto"),
        (_no_readiness, "AB-K8S-PROBES", "bot"),
        (_unlabelled, "AB-K8S-LABELS", "ConfigMap/monitoring"),
        (_no_database_tier, "AB-K8S-TOPOLOGY", "namespace"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_one_change_on_the_prod_set_fails_exactly_the_rule_it_is_about(
    change: Callable[[Manifests], None], rule: str, target: str
) -> None:
    files = copy.deepcopy(_prod())
    change(files)
    assert [(f.check, f.target) for f in _failed(files)] == [(rule, target)]


# --- Pod Security "restricted" -------------------------------------------------------------------------------


def _api_pod() -> dict[str, Any]:
    return copy.deepcopy(_object(_prod(), "api.yaml", "Deployment")["spec"]["template"]["spec"])


def _container_context(pod: dict[str, Any]) -> dict[str, Any]:
    return pod["containers"][0]["securityContext"]


@pytest.mark.parametrize(
    ("change", "violation"),
    [
        (lambda pod: pod.update(hostNetwork=True), "hostNetwork"),
        (lambda pod: pod["volumes"].append({"name": "host", "hostPath": {"path": "/run"}}), "volume host: hostPath"),
        (lambda pod: pod["securityContext"].update(sysctls=[{"name": "net.ipv4.tcp_tw_reuse", "value": "1"}]),
         "sysctl net.ipv4.tcp_tw_reuse"),
        (lambda pod: _container_context(pod).update(privileged=True), "api: privileged"),
        (lambda pod: pod["containers"][0]["ports"][0].update(hostPort=8000), "api: hostPort"),
        (lambda pod: _container_context(pod).pop("allowPrivilegeEscalation"),
         "api: allowPrivilegeEscalation not false"),
        (lambda pod: _container_context(pod).update(runAsUser=0), "api: runs as uid 0"),
        (lambda pod: (pod["securityContext"].pop("seccompProfile"), _container_context(pod).pop("seccompProfile")),
         "api: no RuntimeDefault or Localhost seccomp profile"),
        (lambda pod: _container_context(pod).update(capabilities={"drop": ["NET_RAW"]}),
         "api: capabilities not dropped (ALL)"),
        (lambda pod: _container_context(pod)["capabilities"].update(add=["NET_ADMIN", "NET_BIND_SERVICE"]),
         "api: adds NET_ADMIN"),
    ],
    ids=["host-network", "host-path", "unsafe-sysctl", "privileged", "host-port", "privilege-escalation", "root",
         "no-seccomp", "capabilities-kept", "net-admin"],
)  # fmt: skip
def test_restricted_refuses(change: Callable[[dict[str, Any]], Any], violation: str) -> None:
    pod = _api_pod()
    assert policy.restricted_violations(pod) == []
    change(pod)
    assert policy.restricted_violations(pod) == [violation]


def test_restricted_allows_adding_net_bind_service_and_the_safe_sysctls() -> None:
    pod = _api_pod()
    _container_context(pod)["capabilities"]["add"] = ["NET_BIND_SERVICE"]
    pod["securityContext"]["sysctls"] = [{"name": "net.ipv4.ip_local_port_range", "value": "10240 65535"}]
    assert policy.restricted_violations(pod) == []


def test_a_seccomp_profile_by_annotation_only_does_not_count() -> None:
    files = copy.deepcopy(_prod())
    template = _object(files, "api.yaml", "Deployment")["spec"]["template"]
    template["spec"]["securityContext"].pop("seccompProfile")
    template["spec"]["containers"][0]["securityContext"].pop("seccompProfile")
    template["metadata"]["annotations"] = {"seccomp.security.alpha.kubernetes.io/pod": "runtime/default"}
    failed = [f for f in policy.pss_findings(files, _context()) if not f.ok]
    assert [(f.target, f.detail) for f in failed] == [("api", "api: no RuntimeDefault or Localhost seccomp profile")]


# --- the topology -------------------------------------------------------------------------------------------------


def _topology(files: Manifests, context: policy.Context | None = None) -> Any:
    """The pairs' finding (the first; the second is the way to the internet)."""
    pairs, _internet = policy.topology_findings(files, context or _context())
    return pairs


def _internet(files: Manifests) -> Any:
    _pairs, internet = policy.topology_findings(files, _context())
    return internet


def test_only_the_services_that_talk_to_telegram_reach_the_internet() -> None:
    finding = _internet(_prod())
    assert finding.ok and finding.detail == "internet: bot, mtproto"
    # Without the default deny and with tier policies for ingress only (Kompose's shape), every pod no egress rule
    # selects is open to the internet: the exporters, redis...
    files = _without_policies(_prod(), "default-deny", "dns")
    for policy_ in files["network-policies.yaml"]:
        if policy_["metadata"]["name"].startswith("network-"):
            policy_["spec"].pop("egress")
            policy_["spec"]["policyTypes"] = ["Ingress"]
    loose = _internet(files)
    assert not loose.ok and "redis-exporter" in loose.detail and loose.detail.endswith("the model says bot, mtproto")
    # Without the bot's rule, the bot has no way out, which Telegram's API needs.
    closed = _internet(_without_policies(_prod(), "bot-internet"))
    assert not closed.ok and closed.detail == "internet: mtproto; the model says bot, mtproto"


def test_without_the_default_deny_and_the_egress_rules_pods_reach_the_proxy_beyond_compose() -> None:
    """The proxy's public policy lets in the world (0.0.0.0/0), which holds the pods' addresses too: only the
    egress rules keep the database tier from it."""
    files = _without_policies(_prod(), "default-deny", "dns", "bot-internet", "mtproto-internet")
    for policy_ in files["network-policies.yaml"]:
        policy_["spec"].pop("egress", None)
        policy_["spec"]["policyTypes"] = ["Ingress"]
    finding = _topology(files)
    assert not finding.ok
    assert finding.detail.startswith("beyond Compose: ") and "postgres->proxy" in finding.detail
    assert "Compose allows" not in finding.detail


def test_without_a_tiers_policy_compose_allows_what_the_policies_refuse() -> None:
    finding = _topology(_without_policies(_prod(), "network-database"))
    assert not finding.ok
    assert finding.detail.startswith("Compose allows, policies refuse: ") and "api->postgres" in finding.detail
    assert "beyond Compose" not in finding.detail


def test_policies_without_policy_types_are_read_with_kubernetes_defaults() -> None:
    """No policyTypes: Ingress, and Egress too when the policy has egress rules (the NetworkPolicy API)."""
    files = copy.deepcopy(_prod())
    for policy_ in files["network-policies.yaml"]:
        if policy_["metadata"]["name"] not in ("default-deny", "dns"):  # an egress-only policy must say so
            del policy_["spec"]["policyTypes"]
    assert _topology(files).ok
    # Kompose's shape: a tier's policy with ingress rules only restricts ingress; egress stays open.
    assert network._policy_types({"podSelector": {}, "ingress": []}) == ["Ingress"]
    assert network._policy_types({"podSelector": {}, "egress": []}) == ["Ingress", "Egress"]


def test_an_ip_block_lets_pods_through_only_where_it_holds_the_pod_network() -> None:
    """A private range given to the proxy's egress (say, a backend on the company network) and to postgres' ingress
    (its administrators' network) holds the pods too, when they live in it."""

    def block(name: str, pod: str, direction: str) -> dict[str, Any]:
        kind, key = ("Ingress", "from") if direction == "ingress" else ("Egress", "to")
        return {
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": "analyticbot"},
            "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": pod}}, "policyTypes": [kind],
                     direction: [{key: [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]},
        }  # fmt: skip

    files = copy.deepcopy(_prod())
    files["network-policies.yaml"] += [block("proxy-company", "proxy", "egress"),
                                       block("postgres-admins", "postgres", "ingress")]  # fmt: skip
    beyond = _topology(files)
    assert not beyond.ok and beyond.detail == "beyond Compose: proxy->postgres"
    # A cluster whose pods live elsewhere: the blocks hold none of them.
    elsewhere = policy.Context(_context().memberships, pod_cidr="192.168.0.0/16")
    assert _topology(files, elsewhere).ok


def test_the_internet_egress_excepts_the_pod_network() -> None:
    rendered = {p["metadata"]["name"]: p for p in _prod()["network-policies.yaml"]}
    (rule,) = rendered["bot-internet"]["spec"]["egress"]
    block = rule["to"][0]["ipBlock"]
    assert not network._block_holds_pods(block, _context().pod_cidr)
    assert network._block_holds_pods(block, "203.0.113.0/24")  # pods on public addresses would be "the internet"
    assert network._block_holds_pods({"cidr": "0.0.0.0/0"}, "10.0.0.0/8")
