"""Network policies equal to the Compose tiers, and the topology they allow.

Compose lets every pair of containers on a shared network talk, on any port, and nothing else; an internal
network has no way out. Kubernetes allows everything until a policy selects a pod. So: a default deny for
every pod in the namespace, DNS for all, then one policy per Compose network whose members (a label per
network on each pod) may reach each other, the proxy reachable from anywhere on its two public ports, and
the internet reachable only from the services that talk to Telegram (model.INTERNET).

`allowed_pairs` reads the rendered policies back as the (from, to) pairs they allow, and `compose_pairs`
the pairs the Compose network graph allows: the audit holds the two equal."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from .. import model

API_VERSION = "networking.k8s.io/v1"
# A pod's label for each Compose network it joins: `network.analyticbot.io/database: member`.
NETWORK_LABEL = "network.analyticbot.io/"
MEMBER = "member"
NAME_LABEL = "app.kubernetes.io/name"
# The proxy's public ports (model.PORTS' names): what the world may reach.
PUBLIC_PORTS = ("http", "https")
# The internet, for egress: everything but the private ranges, so that "the internet" never includes the
# cluster's own pods and services (those go through the network policies above).
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10")
WORLD = "0.0.0.0/0"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
DNS_NAMESPACE = "kube-system"


def network_labels(networks: Iterable[str]) -> dict[str, str]:
    """The labels that make a pod a member of each of its Compose networks."""
    return {f"{NETWORK_LABEL}{name}": MEMBER for name in sorted(networks)}


def _policy(name: str, namespace: str, labels: Mapping[str, str], spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": spec,
    }


def policies(
    memberships: Mapping[str, Iterable[str]], namespace: str, labels: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The namespace's NetworkPolicies. `memberships`: each Compose network with the services on it (only those
    rendered); `labels`: the labels every object carries."""
    result = [
        # Nothing in, nothing out, unless a policy below says so.
        _policy("default-deny", namespace, labels, {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        # Every pod resolves names (the services find each other by DNS, as on Compose): the cluster's DNS, in
        # kube-system (the namespace label every cluster since 1.21 sets).
        _policy(
            "dns",
            namespace,
            labels,
            {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: DNS_NAMESPACE}}}],
                        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                    }
                ],
            },
        ),
    ]
    for network in sorted(memberships):
        members = {"matchLabels": {f"{NETWORK_LABEL}{network}": MEMBER}}
        result.append(
            _policy(
                f"network-{network}",
                namespace,
                labels,
                {
                    "podSelector": members,
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [{"from": [{"podSelector": members}]}],
                    "egress": [{"to": [{"podSelector": members}]}],
                },
            )
        )
    if "proxy" in {s for services in memberships.values() for s in services}:
        result.append(
            _policy(
                "proxy-public",
                namespace,
                labels,
                {
                    "podSelector": {"matchLabels": {NAME_LABEL: "proxy"}},
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {
                            "from": [{"ipBlock": {"cidr": WORLD}}],
                            "ports": [{"protocol": "TCP", "port": port} for port in PUBLIC_PORTS],
                        }
                    ],
                },
            )
        )
    rendered = {s for services in memberships.values() for s in services}
    for service in model.INTERNET:
        if service in rendered:
            result.append(
                _policy(
                    f"{service}-internet",
                    namespace,
                    labels,
                    {
                        "podSelector": {"matchLabels": {NAME_LABEL: service}},
                        "policyTypes": ["Egress"],
                        "egress": [{"to": [{"ipBlock": {"cidr": WORLD, "except": list(PRIVATE_RANGES)}}]}],
                    },
                )
            )
    return result


Pair = tuple[str, str]


def compose_pairs(memberships: Mapping[str, Iterable[str]]) -> set[Pair]:
    """The (from, to) pairs the Compose network graph allows: two services sharing a network."""
    pairs: set[Pair] = set()
    for services in memberships.values():
        members = sorted(set(services))
        pairs.update((a, b) for a in members for b in members if a != b)
    return pairs


def _selects(selector: Mapping[str, Any], pod_labels: Mapping[str, str]) -> bool:
    """Whether a podSelector (matchLabels only, as rendered) selects a pod; {} selects every pod."""
    unsupported = set(selector) - {"matchLabels"}
    if unsupported:
        raise ValueError(f"podSelector with {sorted(unsupported)}: only matchLabels is understood")
    return all(pod_labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def _block_holds_pods(block: Mapping[str, Any], pod_cidr: str) -> bool:
    """Whether an ipBlock may hold a pod's address: Kubernetes matches ipBlock against pod addresses too (its
    conformance tests allow a pod by its IP), so a block overlapping the pod network holds pods unless one of its
    exceptions covers that network whole."""
    pods = ipaddress.ip_network(pod_cidr)
    cidr = ipaddress.ip_network(str(block.get("cidr")))
    if cidr.version != pods.version or not cidr.overlaps(pods):
        return False
    excepted = [ipaddress.ip_network(str(e)) for e in block.get("except") or []]
    return not any(e.version == pods.version and pods.subnet_of(e) for e in excepted)  # type: ignore[arg-type]  # same version, checked first


def _peers_allowed(
    rules: list[Mapping[str, Any]] | None, direction: str, pod_labels: Mapping[str, str], pod_cidr: str
) -> bool:
    """Whether some rule of a policy lets the pod with `pod_labels` be a peer (`from` or `to`)."""
    for rule in rules or []:
        peers = rule.get(direction)
        if peers is None:
            return True  # a rule without peers allows every peer (on its ports)
        if any(("podSelector" in p and "namespaceSelector" not in p and _selects(p["podSelector"], pod_labels))
               or ("ipBlock" in p and _block_holds_pods(p["ipBlock"], pod_cidr))
               for p in peers):  # fmt: skip
            return True
    return False


def _policy_types(spec: Mapping[str, Any]) -> list[str]:
    """A policy's types; without the field Kubernetes takes Ingress, and Egress too when it has egress rules."""
    if spec.get("policyTypes"):
        return list(spec["policyTypes"])
    return ["Ingress", *(["Egress"] if "egress" in spec else [])]


def allowed_pairs(
    documents: Iterable[Mapping[str, Any]], pods: Mapping[str, Mapping[str, str]], pod_cidr: str
) -> set[Pair]:
    """The (from, to) pairs of pods (by name, with their labels) that the NetworkPolicies among `documents` allow:
    the sender's egress and the receiver's ingress must both allow it. A pod no policy selects for a direction
    is open in it, as Kubernetes has it; an ipBlock peer (the world, the internet) allows every pod when it may
    hold an address of `pod_cidr`, the pods' network."""
    policies = [d for d in documents if d.get("kind") == "NetworkPolicy"]

    def open_to(pod: str, direction: str, peer: str) -> bool:
        kind, key = ("Ingress", "from") if direction == "ingress" else ("Egress", "to")
        selecting = [
            p for p in policies
            if kind in _policy_types(p["spec"]) and _selects(p["spec"].get("podSelector") or {}, pods[pod])
        ]  # fmt: skip
        if not selecting:
            return True
        return any(_peers_allowed(p["spec"].get(direction), key, pods[peer], pod_cidr) for p in selecting)

    return {(a, b) for a in pods for b in pods if a != b and open_to(a, "egress", b) and open_to(b, "ingress", a)}


# An address on the internet, outside every private range: what "the internet" means to internet_egress.
INTERNET_PROBE = ipaddress.ip_address("1.1.1.1")


def internet_egress(documents: Iterable[Mapping[str, Any]], pods: Mapping[str, Mapping[str, str]]) -> set[str]:
    """The pods the NetworkPolicies let reach the internet: an egress rule without peers, an ipBlock holding an
    internet address it does not except, or no egress policy selecting the pod at all."""
    policies = [d for d in documents if d.get("kind") == "NetworkPolicy"]

    def reaches(pod: str) -> bool:
        selecting = [
            p for p in policies
            if "Egress" in _policy_types(p["spec"]) and _selects(p["spec"].get("podSelector") or {}, pods[pod])
        ]  # fmt: skip
        if not selecting:
            return True
        for policy in selecting:
            for rule in policy["spec"].get("egress") or []:
                peers = rule.get("to")
                if peers is None:
                    return True
                for peer in peers:
                    block = peer.get("ipBlock")
                    if (
                        block
                        and INTERNET_PROBE in ipaddress.ip_network(str(block["cidr"]))
                        and not any(INTERNET_PROBE in ipaddress.ip_network(str(e)) for e in block.get("except") or [])
                    ):
                        return True
        return False

    return {pod for pod in pods if reaches(pod)}
