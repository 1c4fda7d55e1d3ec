"""What the k8s tasks do, reachable without Invoke: render an environment's set from its stack, write it, the
Secrets it needs and the kubectl commands that make them from secrets/ (a value never passes through an
argument or a rendered file)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .. import compose, files, secrets
from ..errors import BadInput
from ..paths import STATE_DIR
from ..tls import backup, layout
from . import render

Progress = Callable[[str], None]
OUT_DIR = STATE_DIR / "k8s"
SERVICE_TYPES = ("LoadBalancer", "NodePort", "ClusterIP")


def default_out(env: str) -> Path:
    return OUT_DIR / env


def render_stack(
    stack: compose.Stack,
    images: Mapping[str, str] | None = None,
    *,
    service_type: str = "LoadBalancer",
    pod_cidr: str = render.Options.pod_cidr,
    merged: Mapping[str, Any] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """The stack's manifest set, in the namespace named like its Compose project. `images`: each image variable's
    reference (a registry's, by digest); default the stack's settings (this checkout's release tags if pinned).
    `merged`: the stack's merged compose config, where the caller has it already."""
    if service_type not in SERVICE_TYPES:
        raise BadInput(f"--service-type must be one of {', '.join(SERVICE_TYPES)}, got {service_type!r}")
    _check_cidr(pod_cidr)
    refs = dict(images) if images else {s.image_variable: stack.settings[s.image_variable] for s in stack.services}
    options = render.Options(
        namespace=stack.project,
        images=refs,
        release=render.release_name(refs),
        proxy_service_type=service_type,
        pod_cidr=pod_cidr,
    )
    return render.render(merged if merged is not None else compose.merged_config(stack), options)


def _check_cidr(value: str) -> None:
    import ipaddress

    try:
        ipaddress.ip_network(value)
    except ValueError:
        raise BadInput(f"--pod-cidr must be a network such as 10.0.0.0/8, got {value!r}") from None


def texts(manifests: Mapping[str, list[dict[str, Any]]]) -> dict[str, str]:
    """Each file's text, as written."""
    return {name: render.dump(documents) for name, documents in sorted(manifests.items())}


def write(manifests: Mapping[str, list[dict[str, Any]]], out: Path) -> list[Path]:
    """Write the set into `out`; a file the earlier render listed in its kustomization.yaml and this one does not
    is removed (a file of the user's own, listed or not by them, stays)."""
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} is a file, not a folder")
    earlier = _listed(out / "kustomization.yaml")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in texts(manifests).items():
        path = out / name
        files.replace_atomic(path, text.encode(), 0o644)
        written.append(path)
    for stale in sorted(set(earlier) - set(manifests)):
        path = out / stale
        if path.is_file() and f"app.kubernetes.io/managed-by: {render.MANAGED_BY}" in path.read_text():
            path.unlink()
    return written


def _listed(kustomization: Path) -> list[str]:
    """The files a kustomization.yaml lists as its resources (none when it is absent or not YAML)."""
    try:
        document = yaml.safe_load(kustomization.read_text()) if kustomization.is_file() else None
    except yaml.YAMLError:
        return []
    resources = document.get("resources") if isinstance(document, dict) else None
    return [str(r) for r in resources if "/" not in str(r)] if isinstance(resources, list) else []


def read(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """A written set, each file's documents (for k8s.validate --dir)."""
    if not folder.is_dir():
        raise BadInput(f"{folder} is not a folder of manifests; render one with `invoke k8s.render`")
    result = {}
    for path in sorted(folder.glob("*.yaml")):
        try:
            result[path.name] = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        except yaml.YAMLError as error:
            raise BadInput(f"{path}: not YAML ({str(error).splitlines()[0]})") from None
    return result


# --- Secrets ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecretObject:
    """One Secret the set names: its Kubernetes name, its type, and each key with the file that holds it."""

    name: str
    type: str  # generic or tls
    keys: tuple[tuple[str, Path], ...]


def secret_objects(stack: compose.Stack) -> list[SecretObject]:
    """The Secrets the stack's pods mount: each model secret its own (its one key named like its file), the proxy's
    TLS pair, and the backup path's certificates where that overlay is on."""
    secrets_dir = Path(stack.settings["SECRETS_DIR"])
    names = sorted({name for service in stack.services for name in service.secrets})
    objects = [SecretObject(render.secret_name(n), "generic", ((n, secrets_dir / n),)) for n in names]
    tls_dir = Path(stack.settings["TLS_DIR"])
    objects.append(
        SecretObject(
            "proxy-tls",
            "tls",
            (("tls.crt", tls_dir / layout.FULLCHAIN), ("tls.key", tls_dir / layout.PRIVKEY)),
        )
    )
    if stack.backup:
        folder = secrets_dir / backup.FOLDER
        keys = [("ca.crt", folder / "ca.crt")]
        for peer in backup.PEERS:
            keys += [(f"{peer}.crt", folder / f"{peer}.crt"), (f"{peer}.key", folder / f"{peer}.key")]
        objects.append(SecretObject("backup-tls", "generic", tuple(keys)))
    return sorted(objects, key=lambda o: o.name)


def create_command(secret: SecretObject, namespace: str) -> list[str]:
    """The kubectl command that prints the Secret (client side, from the files: no value in an argument);
    `kubectl apply -f -` then makes or updates it."""
    if secret.type == "tls":
        (_, cert), (_, key) = secret.keys
        sources = [f"--cert={cert}", f"--key={key}"]
    else:
        sources = [f"--from-file={key}={path}" for key, path in secret.keys]
    return ["kubectl", "create", "secret", secret.type, secret.name, "--namespace", namespace, *sources,
            "--dry-run=client", "--output=yaml"]  # fmt: skip


def missing_files(objects: list[SecretObject], stack: compose.Stack) -> list[str]:
    """The files a Secret needs and secrets/ lacks; an absent optional secret is not missing (it is made empty,
    as on Compose, where the services read an empty secret as not configured)."""
    optional = {spec.name for spec in secrets.SECRETS if not spec.required(stack.env)}
    return [
        str(path)
        for secret in objects
        for key, path in secret.keys
        if not path.is_file() and not (secret.type == "generic" and key in optional)
    ]
