"""What each image we build is made of: its Dockerfile, build args, base images, wheelhouses and the files whose
last commit labels it. Data only: build.py builds from it, the audit reads the Dockerfiles it names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import model
from .paths import NGINX_DIR, SERVICES_DIR


@dataclass(frozen=True)
class ImageSpec:
    """How one stack image is built: its Dockerfile, fixed build args, and which
    build args name a base image (ARG name -> base recipe name)."""

    name: str
    dockerfile: Path
    build_args: tuple[tuple[str, str], ...]
    base_args: tuple[tuple[str, str], ...]
    # The wheelhouses (.cache/wheels/NAME, from services/NAME/requirements.txt) its build mounts.
    wheelhouses: tuple[str, ...]
    # What the image is built from (besides its bases): its labels name the last commit that touched
    # these, so a commit elsewhere (README, tests, the toolkit) leaves the image ID as it was. One
    # exception, on purpose: the other services' code reaches an image only through the list of modules
    # it imports (the shared pruned runtime); listing that code would relabel, and so redeploy, the api
    # for every bot commit. A change of that list changes the runtime layer, hence the image ID, anyway.
    inputs: tuple[str, ...] = ()
    # The Dockerfile stage to build; None: the last one.
    target: str | None = None


_PYTHON_BASES = (("PYTHON_BUILD_IMAGE", "python-build"), ("PYTHON_RUNTIME_IMAGE", "python-runtime"))
# The pins the three share (services/common/requirements.txt), each one's own, and certbot's: the runtime
# layer all four images share is pruned to the closure of all of them.
PYTHON_WHEELHOUSES: tuple[str, ...] = ("common", *model.APPS, "certbot")
IMAGES: dict[str, ImageSpec] = {
    **{
        name: ImageSpec(
            name,
            SERVICES_DIR / "Dockerfile",
            (("SERVICE", name),),
            _PYTHON_BASES,
            # Every service's: the runtime and shared layers are pruned to the closure of all three.
            wheelhouses=PYTHON_WHEELHOUSES,
            inputs=(
                "services/Dockerfile",
                "services/build",
                "services/common",
                f"services/{name}",
                *(f"services/{other}/requirements.txt" for other in model.APPS if other != name),
            ),
        )
        for name in model.APPS
    },
    "proxy": ImageSpec(
        "proxy", NGINX_DIR / "Dockerfile", (), (("NGINX_IMAGE", "nginx"),), wheelhouses=(), inputs=("nginx",)
    ),
    # certbot runs one-off beside the proxy (tls.prod, tls.renew): a stage of the services' Dockerfile.
    "certbot": ImageSpec(
        "certbot",
        SERVICES_DIR / "Dockerfile",
        (),
        _PYTHON_BASES,
        wheelhouses=PYTHON_WHEELHOUSES,
        inputs=(
            "services/Dockerfile",
            "services/build",
            "services/certbot",
            *(f"services/{name}/requirements.txt" for name in ("common", *model.APPS)),
        ),
        target="certbot",
    ),
}
SERVICES: tuple[str, ...] = tuple(IMAGES)
