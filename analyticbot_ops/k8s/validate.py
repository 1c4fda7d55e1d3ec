"""What can be proven of a manifest set without a cluster: each object against the Kubernetes schemas of three
versions (kubernetes-validate, in-process and strict: its CLI only warns on a kind it has no schema for), and
the cross-references those schemas do not check: selectors against pod labels, Services against existing
pods, named ports, every referenced Secret, ConfigMap, claim and volume, DNS-1123 names, label values and
quantities. Each problem is one line naming the file and the object."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# The oldest Kubernetes still supported by the big clouds, a middle one, and the newest the validator knows.
VERSIONS = ("1.30.0", "1.33.0", "1.37.0")
KUSTOMIZATION = "kustomization.yaml"
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")

DNS_1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
DNS_1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
PORT_NAME = re.compile(r"(?=.*[a-z])[a-z0-9]([-a-z0-9]*[a-z0-9])?")  # IANA_SVC_NAME, at most 15
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
QUANTITY = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?\d+)?")
# Objects whose names Kubernetes holds to a DNS-1123 label (63 characters, no dots); the rest are subdomains.
LABEL_NAMED = ("Service", "Namespace")


@dataclass(frozen=True)
class Problem:
    file: str
    object: str  # Kind/name
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.object}: {self.message}"


def _name(document: Mapping[str, Any]) -> str:
    return f"{document.get('kind', '?')}/{(document.get('metadata') or {}).get('name', '?')}"


def schema_problems(files: Mapping[str, list[dict[str, Any]]], versions: Iterable[str] = VERSIONS) -> list[Problem]:
    """Each object against each version's schema, strictly (an unknown field fails); a kind or API version the
    schemas do not have (policy/v1beta1 since 1.25) fails too."""
    import kubernetes_validate  # 10 MB of schemas: loaded only where manifests are validated

    problems = []
    for file, documents in sorted(files.items()):
        for document in documents:
            if file == KUSTOMIZATION:
                continue
            for version in versions:
                try:
                    kubernetes_validate.validate(document, version, strict=True)
                except kubernetes_validate.SchemaNotFoundError:
                    missing = f"{document.get('apiVersion')} {document.get('kind')}"
                    problems.append(Problem(file, _name(document), f"Kubernetes {version} has no {missing}"))
                except kubernetes_validate.ValidationError as error:
                    where = ".".join(str(p) for p in error.path) or "(top)"
                    problems.append(Problem(file, _name(document), f"Kubernetes {version}: {where}: {error.message}"))
    return problems


def _pod_template(document: Mapping[str, Any]) -> Mapping[str, Any] | None:
    if document.get("kind") not in WORKLOADS:
        return None
    return (document.get("spec") or {}).get("template") or {}


def _containers(pod_spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [*(pod_spec.get("initContainers") or []), *(pod_spec.get("containers") or [])]


def _matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def reference_problems(
    files: Mapping[str, list[dict[str, Any]]], secrets: Iterable[str], namespace: str | None = None
) -> list[Problem]:
    """The cross-references the schemas do not check. `secrets`: the Secrets `k8s.secrets` makes (their values
    are never rendered, so they are the one thing referenced and not in the set)."""
    problems: list[Problem] = []
    known_secrets = set(secrets)
    everything = [(file, d) for file, documents in sorted(files.items()) if file != KUSTOMIZATION for d in documents]
    configmaps = {d["metadata"]["name"] for _, d in everything if d.get("kind") == "ConfigMap"}
    claims = {d["metadata"]["name"] for _, d in everything if d.get("kind") == "PersistentVolumeClaim"}
    pods = [(file, d, t) for file, d in everything if (t := _pod_template(d)) is not None]

    def add(file: str, document: Mapping[str, Any], message: str) -> None:
        problems.append(Problem(file, _name(document), message))

    for file, document in everything:
        _names_and_labels(file, document, add)
        if namespace is not None and document.get("kind") != "Namespace":
            found = (document.get("metadata") or {}).get("namespace")
            if found != namespace:
                add(file, document, f"namespace {found!r}, not {namespace!r}")
    for file, document, template in pods:
        labels = (template.get("metadata") or {}).get("labels") or {}
        selector = ((document.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        if document["kind"] != "Job" and not _matches(selector, labels):
            add(file, document, f"selector {selector} does not match its pod labels")
        spec = template.get("spec") or {}
        volumes = {v.get("name"): v for v in spec.get("volumes") or []}
        claim_templates = (document.get("spec") or {}).get("volumeClaimTemplates") or []
        templates = {(c.get("metadata") or {}).get("name") for c in claim_templates}
        for volume in volumes.values():
            for secret in _secret_refs(volume):
                if secret not in known_secrets:
                    add(file, document, f"volume {volume.get('name')} names Secret {secret}, which is not made")
            if "configMap" in volume and volume["configMap"].get("name") not in configmaps:
                add(
                    file,
                    document,
                    f"volume {volume.get('name')} names ConfigMap {volume['configMap'].get('name')}, "
                    "which is not rendered",
                )
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim is not None and claim not in claims:
                add(file, document, f"volume {volume.get('name')} names claim {claim}, which is not rendered")
        for container in _containers(spec):
            ports = {p.get("name") for p in container.get("ports") or [] if p.get("name")}
            for port in ports:
                if len(port) > 15 or not PORT_NAME.fullmatch(port):
                    add(file, document, f"container {container.get('name')}: port name {port!r} is not an IANA name")
            for mount in container.get("volumeMounts") or []:
                if mount.get("name") not in volumes and mount.get("name") not in templates:
                    add(
                        file,
                        document,
                        f"container {container.get('name')} mounts {mount.get('name')}, "
                        "which is no volume or claim template",
                    )
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                check = container.get(probe) or {}
                port = (check.get("httpGet") or check.get("tcpSocket") or {}).get("port")
                if isinstance(port, str) and port not in ports:
                    add(
                        file,
                        document,
                        f"container {container.get('name')}: {probe} names port {port!r}, which it does not have",
                    )
            _resource_problems(file, document, container, add)
        for claim_template in (document.get("spec") or {}).get("volumeClaimTemplates") or []:
            storage = ((claim_template.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage")
            if not QUANTITY.fullmatch(str(storage)):
                add(
                    file,
                    document,
                    f"claim {claim_template['metadata'].get('name')}: storage {storage!r} is not a quantity",
                )
    for file, document in everything:
        if document.get("kind") == "Service":
            _service_problems(file, document, pods, add)
        if document.get("kind") == "PodDisruptionBudget":
            selector = ((document.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            if not any(_matches(selector, (t.get("metadata") or {}).get("labels") or {}) for _, _, t in pods):
                add(file, document, f"selector {selector} selects no pod")
    return problems


def _secret_refs(volume: Mapping[str, Any]) -> list[str]:
    names = []
    if "secret" in volume:
        names.append(volume["secret"].get("secretName"))
    for source in (volume.get("projected") or {}).get("sources") or []:
        if "secret" in source:
            names.append(source["secret"].get("name"))
    return names


def _service_problems(file: str, service: Mapping[str, Any], pods: list[tuple[str, Any, Any]], add: Any) -> None:
    selector = (service.get("spec") or {}).get("selector") or {}
    selected = [t for _, _, t in pods if _matches(selector, (t.get("metadata") or {}).get("labels") or {})]
    if not selected:
        add(file, service, f"selector {selector} selects no pod")
        return
    names = {p.get("name") for t in selected for c in _containers(t.get("spec") or {}) for p in c.get("ports") or []}
    for port in (service.get("spec") or {}).get("ports") or []:
        target = port.get("targetPort")
        if isinstance(target, str) and target not in names:
            add(file, service, f"port {port.get('name')}: targetPort {target!r} is no port of the pods it selects")


def _resource_problems(file: str, document: Mapping[str, Any], container: Mapping[str, Any], add: Any) -> None:
    resources = container.get("resources") or {}
    for kind in ("requests", "limits"):
        for resource, value in (resources.get(kind) or {}).items():
            if not QUANTITY.fullmatch(str(value)):
                add(file, document, f"container {container.get('name')}: {kind}.{resource} {value!r} is not a quantity")
    for resource, request in (resources.get("requests") or {}).items():
        limit = (resources.get("limits") or {}).get(resource)
        if limit is not None and _amount(str(request)) > _amount(str(limit)):
            add(file, document, f"container {container.get('name')}: {resource} request {request} above limit {limit}")


_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def _amount(quantity: str) -> float:
    match = re.fullmatch(r"([0-9.]+(?:[eE][+-]?\d+)?)([A-Za-z]*)", quantity)
    if not match:
        return float("nan")
    number, suffix = match.groups()
    return float(number) * _SUFFIXES.get(suffix, 1.0)


def _names_and_labels(file: str, document: Mapping[str, Any], add: Any) -> None:
    metadata = document.get("metadata") or {}
    name = str(metadata.get("name", ""))
    pattern, limit = (DNS_1123_LABEL, 63) if document.get("kind") in LABEL_NAMED else (DNS_1123_SUBDOMAIN, 253)
    if len(name) > limit or not pattern.fullmatch(name):
        add(file, document, f"name {name!r} is not DNS-1123")
    label_sets = [metadata.get("labels") or {}]
    template = _pod_template(document)
    if template is not None:
        label_sets.append((template.get("metadata") or {}).get("labels") or {})
        for container in _containers(template.get("spec") or {}):
            if not DNS_1123_LABEL.fullmatch(str(container.get("name", ""))):
                add(file, document, f"container name {container.get('name')!r} is not DNS-1123")
        for volume in (template.get("spec") or {}).get("volumes") or []:
            if not DNS_1123_LABEL.fullmatch(str(volume.get("name", ""))):
                add(file, document, f"volume name {volume.get('name')!r} is not DNS-1123")
    for labels in label_sets:
        for key, value in labels.items():
            prefix, _, label = str(key).rpartition("/")
            bad_prefix = bool(prefix) and not DNS_1123_SUBDOMAIN.fullmatch(prefix)
            if bad_prefix or len(label) > 63 or not LABEL_NAME.fullmatch(label):
                add(file, document, f"label key {key!r} is malformed")
            if len(str(value)) > 63 or not LABEL_VALUE.fullmatch(str(value)):
                add(file, document, f"label {key}: value {value!r} is malformed")


def kustomization_problems(files: Mapping[str, list[dict[str, Any]]]) -> list[Problem]:
    """kustomization.yaml lists every other file, once."""
    documents = files.get(KUSTOMIZATION) or []
    if len(documents) != 1:
        return [Problem(KUSTOMIZATION, "Kustomization", "missing")]
    listed = list(documents[0].get("resources") or [])
    expected = sorted(f for f in files if f != KUSTOMIZATION)
    if sorted(listed) != expected or len(set(listed)) != len(listed):
        return [Problem(KUSTOMIZATION, "Kustomization", f"resources {listed} are not the set's files {expected}")]
    return []


def problems(
    files: Mapping[str, list[dict[str, Any]]],
    secrets: Iterable[str],
    namespace: str | None = None,
    versions: Iterable[str] = VERSIONS,
) -> list[Problem]:
    """Everything k8s.validate checks, in order: the set's own index, the schemas, the cross-references."""
    return [
        *kustomization_problems(files),
        *schema_problems(files, versions),
        *reference_problems(files, secrets, namespace),
    ]
