"""Images pinned by digest in a registry: what a cluster (a swarm, Kubernetes) pulls, every node the same bytes."""

from __future__ import annotations

from collections.abc import Callable

from . import compose, docker
from .errors import OpsError

Progress = Callable[[str], None]


def push_pinned(stack: compose.Stack, push_to: str, refer_as: str, progress: Progress) -> dict[str, str]:
    """Each image variable's reference in a registry, pinned by the digest it gave: pushed to `push_to` (the
    registry as this host reaches it), named from `refer_as` (as the cluster's nodes reach it; often the same)."""
    refs = {}
    for variable in dict.fromkeys(s.image_variable for s in stack.services):
        refs[variable] = push_one(stack.settings[variable], push_to, refer_as)
        progress(f"  {variable}: {refs[variable]}")
    return refs


def push_one(tag: str, push_to: str, refer_as: str) -> str:
    """One local image pushed to `push_to`, and its reference pinned by digest as `refer_as` names the registry."""
    info = docker.inspect("image", tag)
    if info is None:
        raise OpsError(f"image {tag} is missing; run `invoke images.base images.build`")
    repository = path_of(tag)
    local = f"{push_to}/{repository}:{str(info['Id']).removeprefix('sha256:')[:12]}"
    docker.docker(["tag", tag, local])
    docker.docker(["push", local], timeout=600)
    pushed = docker.inspect("image", local) or {}
    # The push tag served its purpose: left, every deploy to every lab would add one to this daemon's image list.
    # Untagging removes the name only (the image keeps `tag`).
    if local != tag:
        docker.docker(["rmi", local], check=False)
    digests = [d for d in pushed.get("RepoDigests") or [] if d.startswith(f"{push_to}/{repository}@")]
    if not digests:
        raise OpsError(f"the registry gave no digest for {local}")
    return f"{refer_as}/{repository}@{digests[0].rsplit('@', 1)[1]}"


def path_of(reference: str) -> str:
    """An image reference's repository path without its registry, tag or digest:
    registry.internal:5000/ab/api:1.4 -> ab/api (Docker's rule: a first part with '.' or ':' is a host)."""
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return rest
    return name
