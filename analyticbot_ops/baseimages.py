"""Base images built from the Debian packages the host's apt already uses, with no
container registry: `mmdebstrap --variant=extract` unpacks the packages, a hook
prunes and configures the tree, and `docker import` turns the tarball into an image.

Each image records a hash of its inputs in a label, so a rebuild is skipped while
the recipe, the hooks and the apt sources are unchanged. Where a registry answers,
the official images can stand in for these (`--source official`)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from . import docker, model, runner
from .errors import BadInput, OpsError
from .model import APP_UID, DEFAULT_NAMESPACE

HOOKS_DIR = Path(__file__).resolve().parent / "baseimages_hooks"
MERGED_USR_HOOKS = Path("/usr/share/mmdebstrap/hooks/merged-usr")
INPUTS_LABEL = "org.analyticbot.base.inputs"
# Bump when the way images are assembled changes in a way the hashed inputs miss.
RECIPE_FORMAT = 1


@dataclass(frozen=True)
class BaseRecipe:
    """One base image: which packages, which hooks, and what stands in for it online."""

    name: str
    description: str
    packages: tuple[str, ...]
    hooks: tuple[tuple[str, ...], ...]
    changes: tuple[str, ...]
    official_image: str
    # Files the hooks copy into the image: hashed with the hooks.
    extra_files: tuple[str, ...] = ()
    # extract unpacks packages without running their maintainer scripts (the smallest images); minbase
    # runs them, for what needs them (an engine's groups and iptables alternatives).
    variant: str = "extract"
    # Why the official image cannot stand in for this one (then `--source official` builds it from Debian too).
    official_lacks: str = ""

    def tag(self, namespace: str = DEFAULT_NAMESPACE) -> str:
        return f"{namespace}/{self.name}:bookworm"


def _monitoring(
    name: str, package: str, extra: tuple[str, ...], port: int, official: str, description: str
) -> BaseRecipe:
    """A monitoring image: one Debian package's Go binary (it links only libc) as the entrypoint, unpacked
    without the package's dependency tree, busybox for the healthcheck, and nothing else."""
    return BaseRecipe(
        name=name,
        description=description,
        packages=("libc6", "busybox"),
        hooks=(("unpack.sh", package, *extra), ("monitoring.sh", package), ("common.sh",)),
        changes=(
            f"USER {APP_UID}:{APP_UID}",
            f"EXPOSE {port}",
            # The binary alone: the compose overlay passes the flags, so an official image (whose
            # entrypoint is its own binary) takes the same command.
            f'ENTRYPOINT ["/usr/bin/{package}"]',
        ),
        official_image=official,
    )


# Prometheus's classic UI loads these scripts, styles and fonts (Debian links them from web/static).
_PROMETHEUS_UI = (
    "libjs-bootstrap4",
    "libjs-d3",
    "libjs-eonasdan-bootstrap-datetimepicker",
    "libjs-jquery",
    "libjs-jquery-hotkeys",
    "libjs-moment",
    "libjs-moment-timezone",
    "libjs-mustache",
    "libjs-popper.js",
    "libjs-rickshaw",
    "fonts-glyphicons-halflings",
)

MONITORING_RECIPES: tuple[BaseRecipe, ...] = (
    _monitoring(
        "prometheus",
        "prometheus",
        _PROMETHEUS_UI,
        9090,
        "prom/prometheus:v2.42.0",
        "Prometheus 2.42 from Debian: the server, its classic UI and console libraries (promtool stays out)",
    ),
    _monitoring(
        "alertmanager",
        "prometheus-alertmanager",
        (),
        9093,
        "prom/alertmanager:v0.25.0",
        "Alertmanager 0.25 from Debian with its default.tmpl (amtool stays out)",
    ),
    _monitoring(
        "postgres-exporter",
        "prometheus-postgres-exporter",
        (),
        9187,
        "quay.io/prometheuscommunity/postgres-exporter:v0.11.1",
        "the PostgreSQL exporter 0.11 from Debian",
    ),
    _monitoring(
        "redis-exporter",
        "prometheus-redis-exporter",
        (),
        9121,
        "oliver006/redis_exporter:v1.45.0",
        "the Redis exporter 1.45 from Debian",
    ),
    _monitoring(
        "nginx-exporter",
        "prometheus-nginx-exporter",
        (),
        9113,
        "nginx/nginx-prometheus-exporter:0.11.0",
        "the nginx stub_status exporter 0.11 from Debian",
    ),
    _monitoring(
        "blackbox-exporter",
        "prometheus-blackbox-exporter",
        (),
        9115,
        "prom/blackbox-exporter:v0.23.0",
        "the blackbox exporter 0.23 from Debian: the edge probe through the proxy",
    ),
)

_PYTHON_ENV = ("ENV LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1",)

RECIPES: tuple[BaseRecipe, ...] = (
    BaseRecipe(
        name="python-runtime",
        description="Python 3.11 runtime: unpacked Debian packages, no shell, no compilers, user app",
        packages=("python3.11-minimal", "libpython3.11-stdlib", "ca-certificates"),
        hooks=(("common.sh",), ("python.sh", "runtime")),
        changes=(*_PYTHON_ENV, f"USER {APP_UID}:{APP_UID}", "WORKDIR /home/app", 'CMD ["python3"]'),
        official_image="python:3.11-slim-bookworm",
    ),
    BaseRecipe(
        name="python-build",
        description="Python 3.11 with pip and a shell, for build stages only (installs wheels, compiles bytecode)",
        # dash and coreutils so that RUN's shell form works; binutils to strip the
        # wheels' shared objects (debug symbols: ~15 MB). No compiler: every
        # dependency arrives as a wheel built on the host.
        packages=(
            "python3.11-minimal",
            "libpython3.11-stdlib",
            "python3-pip",
            "ca-certificates",
            "dash",
            "coreutils",
            "findutils",
            "binutils",
        ),
        hooks=(("common.sh",), ("python.sh", "build")),
        changes=(*_PYTHON_ENV, 'CMD ["python3"]'),
        official_image="python:3.11-slim-bookworm",
    ),
    BaseRecipe(
        name="postgres",
        description="PostgreSQL 15 server and pgBackRest 2.45 from Debian without LLVM JIT or Perl; "
        "official-image entrypoint contract",
        # dash and coreutils run the entrypoint script (first-run initdb). pgBackRest archives the WAL
        # (archive_command), restores, and serves the repository host over TLS (recovery/).
        packages=("postgresql-15", "pgbackrest", "dash", "coreutils"),
        hooks=(("common.sh",), ("postgres.sh",)),
        extra_files=("postgres-entrypoint.sh",),
        changes=(
            "ENV LANG=C.UTF-8 PGDATA=/var/lib/postgresql/data "
            "PATH=/usr/lib/postgresql/15/bin:/usr/local/bin:/usr/bin:/bin",
            f"USER {APP_UID}:{APP_UID}",
            'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]',
            'CMD ["postgres"]',
            "EXPOSE 5432",
            'VOLUME ["/var/lib/postgresql/data"]',
        ),
        official_image="postgres:15-bookworm",
        official_lacks="the official postgres image has no pgBackRest, which the backup overlay runs",
    ),
    BaseRecipe(
        name="redis",
        description="Redis 7 server and redis-cli from Debian",
        packages=("redis-server", "redis-tools"),
        hooks=(("common.sh",), ("redis.sh",)),
        changes=(
            f"USER {APP_UID}:{APP_UID}",
            "WORKDIR /data",
            'CMD ["redis-server"]',
            "EXPOSE 6379",
            'VOLUME ["/data"]',
        ),
        official_image="redis:7-bookworm",
    ),
    BaseRecipe(
        name="nginx",
        description=f"nginx 1.22 from Debian, unprivileged ({model.PROXY_HTTP_PORT}/{model.PROXY_HTTPS_PORT}), "
        "busybox wget for its healthcheck",
        packages=("nginx", "busybox"),
        hooks=(("common.sh",), ("nginx.sh",)),
        changes=(
            f"USER {APP_UID}:{APP_UID}",
            f"EXPOSE {model.PROXY_HTTP_PORT} {model.PROXY_HTTPS_PORT}",
            'CMD ["nginx", "-e", "stderr", "-g", "daemon off;"]',
        ),
        official_image="nginxinc/nginx-unprivileged:1.22",
    ),
    BaseRecipe(
        name="pebble",
        description="Let's Encrypt's pebble ACME test server from Debian (tests only)",
        packages=("pebble", "ca-certificates"),
        hooks=(("common.sh",), ("pebble.sh",)),
        changes=(
            f"USER {APP_UID}:{APP_UID}",
            # Deterministic tests: no random validation delays, no nonce rejections.
            "ENV PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0",
            "EXPOSE 14000 15000",
            'CMD ["pebble", "-config", "/etc/pebble/pebble-config.json"]',
        ),
        official_image="ghcr.io/letsencrypt/pebble:latest",
    ),
    # The monitoring overlay's parts (compose/docker-compose.monitoring.yml).
    *MONITORING_RECIPES,
)


# The Swarm lab's images (`invoke swarm.lab-up` builds them; `images.base` builds them only by name):
# Docker Engine nodes and the registry they pull from.
LAB_RECIPES: tuple[BaseRecipe, ...] = (
    BaseRecipe(
        name="swarm-node",
        description="a Docker Engine (Debian's docker.io 20.10) to run as one node of the Swarm lab",
        packages=("docker.io", "iptables", "ca-certificates", "procps", "iproute2"),
        hooks=(("swarm-node.sh",),),
        changes=('CMD ["dockerd"]',),
        official_image="docker:20.10-dind",
        variant="minbase",
    ),
    BaseRecipe(
        name="registry",
        description="Debian's docker-registry 2.8, the Swarm lab's image registry",
        packages=("docker-registry", "ca-certificates"),
        hooks=(("common.sh",), ("registry.sh",)),
        changes=(
            f"USER {APP_UID}:{APP_UID}",
            "EXPOSE 5000",
            'VOLUME ["/var/lib/docker-registry"]',
            'CMD ["/usr/bin/docker-registry", "serve", "/etc/docker/registry/config.yml"]',
        ),
        official_image="registry:2.8",
    ),
)


def recipe(name: str) -> BaseRecipe:
    for candidate in (*RECIPES, *LAB_RECIPES):
        if candidate.name == name:
            return candidate
    known = ", ".join(r.name for r in (*RECIPES, *LAB_RECIPES))
    raise BadInput(f"unknown base image {name!r}; known: {known}")


# --- the host's apt sources -------------------------------------------------------------


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]

    def mirror_lines(self, codename: str) -> list[str]:
        """mmdebstrap mirror arguments for the suites of this release, main only."""
        return [
            f"deb {self.uri} {suite} main"
            for suite in self.suites
            if suite == codename or suite.startswith(codename + "-")
            if "main" in self.components
        ]


def parse_one_line_sources(text: str) -> list[AptSource]:
    """`deb [opts] URI SUITE COMPONENT...` lines, as in sources.list."""
    sources = []
    for raw in text.splitlines():
        line = re.sub(r"\[[^]]*\]", "", raw.split("#", 1)[0]).split()
        if len(line) >= 4 and line[0] == "deb":
            sources.append(AptSource(line[1].rstrip("/"), (line[2],), tuple(line[3:])))
    return sources


def parse_deb822_sources(text: str) -> list[AptSource]:
    """The stanzas of a deb822 `.sources` file that are enabled binary sources."""
    sources = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            sources.append(
                AptSource(
                    uri.rstrip("/"),
                    tuple(fields.get("suites", "").split()),
                    tuple(fields.get("components", "").split()),
                )
            )
    return sources


def host_apt_sources(etc_apt: Path = Path("/etc/apt")) -> list[AptSource]:
    sources: list[AptSource] = []
    main_list = etc_apt / "sources.list"
    if main_list.is_file():
        sources += parse_one_line_sources(main_list.read_text())
    for path in sorted((etc_apt / "sources.list.d").glob("*")):
        if path.suffix == ".list":
            sources += parse_one_line_sources(path.read_text())
        elif path.suffix == ".sources":
            sources += parse_deb822_sources(path.read_text())
    return sources


def host_codename(os_release: Path = Path("/etc/os-release")) -> str:
    if os_release.is_file():
        match = re.search(r"^VERSION_CODENAME=\"?([a-z]+)", os_release.read_text(), re.MULTILINE)
        if match:
            return match.group(1)
    raise OpsError(
        "cannot tell the Debian release from /etc/os-release; use --source official where a registry answers"
    )


def mirror_lines(sources: Iterable[AptSource], codename: str) -> list[str]:
    lines = [line for source in sources for line in source.mirror_lines(codename)]
    if not lines:
        raise OpsError(
            f"the host's apt sources list no Debian '{codename}' main suite to build base images from; "
            "use --source official where a registry answers"
        )
    return list(dict.fromkeys(lines))


# --- building ---------------------------------------------------------------------------


def inputs_hash(base: BaseRecipe, mirrors: list[str], codename: str) -> str:
    """Everything that decides an image's content, hashed; stored in its label."""
    digest = hashlib.sha256()
    content = [RECIPE_FORMAT, base.packages, base.hooks, base.changes, mirrors, codename, APP_UID]
    if base.variant != "extract":  # the images built before variants existed keep their hash
        content.append(base.variant)
    digest.update(json.dumps(content).encode())
    for hook in sorted({h[0] for h in base.hooks} | set(base.extra_files)):
        digest.update((HOOKS_DIR / hook).read_bytes())
    return digest.hexdigest()[:16]


def mmdebstrap_command(base: BaseRecipe, codename: str, mirrors: list[str]) -> list[str]:
    command = [
        "mmdebstrap",
        "--quiet",
        "--mode=root",
        f"--variant={base.variant}",
        # Without the merged-usr hook, usrmerge drags Perl in (+50 MB).
        f"--hook-dir={MERGED_USR_HOOKS}",
        "--include=" + ",".join(base.packages),
    ]
    # Extract-hooks are the only hooks mmdebstrap runs for the extract variant; the others customize.
    kind = "--extract-hook" if base.variant == "extract" else "--customize-hook"
    for script, *args in base.hooks:
        quoted = " ".join(f"'{a}'" for a in args)
        # The app user's uid comes from the model: the hooks write it into passwd and chown to it.
        command.append(f"{kind}=APP_UID={APP_UID} sh '{HOOKS_DIR / script}' \"$1\" {quoted}")
    return [*command, codename, "-", *mirrors]


@dataclass
class BaseBuild:
    name: str
    tag: str
    action: str  # built | kept | official | fallback
    seconds: float = 0.0
    size: int = 0
    source: str = "debian"
    notes: list[str] = field(default_factory=list)


def _check_tools() -> None:
    if shutil.which("mmdebstrap") is None:
        raise OpsError("mmdebstrap is not installed: run scripts/bootstrap, or apt-get install mmdebstrap")
    if not MERGED_USR_HOOKS.is_dir():
        raise OpsError(f"{MERGED_USR_HOOKS} is missing: mmdebstrap's hooks are needed (apt-get install mmdebstrap)")


def build_from_debian(base: BaseRecipe, namespace: str, mirrors: list[str], codename: str, force: bool) -> BaseBuild:
    """Build one base image unless an image with the same inputs exists."""
    tag = base.tag(namespace)
    wanted = inputs_hash(base, mirrors, codename)
    labels = docker.image_labels(tag)
    if not force and labels is not None and labels.get(INPUTS_LABEL) == wanted:
        return BaseBuild(base.name, tag, "kept", size=docker.image_size(tag))
    _check_tools()
    started = time.monotonic()
    changes = [
        *base.changes,
        f'LABEL {INPUTS_LABEL}={wanted} org.opencontainers.image.description="{base.description}"',
    ]
    importer = [docker.client().path, "import", *[arg for c in changes for arg in ("--change", c)], "-", tag]
    # mmdebstrap writes the root filesystem as a tar stream straight into `docker import`: no copy on disk.
    with runner.start(mmdebstrap_command(base, codename, mirrors), text=False) as debstrap:
        imported = runner.run(importer, check=False, stdin=debstrap.stdout, what="docker import")
        debstrap.stdout.close()
        errors = debstrap.stderr.read().decode(errors="replace") if debstrap.stderr else ""
        debstrap.wait()
    if debstrap.returncode != 0:
        if imported.returncode == 0:
            # docker import took a stream that was cut short: never leave it tagged (and labelled as
            # built from these inputs), or the next run would keep it.
            docker.docker(["rmi", tag], check=False)
        raise OpsError(f"mmdebstrap failed for {base.name}: {_last_error(errors)}")
    if imported.returncode != 0:
        raise OpsError(f"docker import failed for {base.name}: {docker.first_line(imported.stderr)}")
    return BaseBuild(base.name, tag, "built", time.monotonic() - started, docker.image_size(tag))


def _last_error(stderr: str) -> str:
    """The line that explains a failed mmdebstrap run: the last one that is not
    mmdebstrap's own I:/E: bookkeeping (a hook's or apt's message), else the first E:
    (the cause; later ones are mmdebstrap giving up)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    own = [line for line in lines if not line.startswith(("I:", "W:", "E:"))]
    errors = [line for line in lines if line.startswith("E:")]
    if own:
        return own[-1]
    return errors[0] if errors else "(no output)"


def use_official(base: BaseRecipe) -> bool:
    """Pull the official image; False when no registry answers."""
    return docker.docker(["pull", "--quiet", base.official_image], check=False, timeout=300).returncode == 0


def build_base_images(
    names: Iterable[str] | None = None,
    *,
    source: str = "debian",
    namespace: str = DEFAULT_NAMESPACE,
    force: bool = False,
    progress: Callable[[str], None] = lambda _msg: None,
) -> list[BaseBuild]:
    """Build (or keep) the base images; with source='official', pull the official ones,
    falling back to the Debian build where no registry answers."""
    if source not in ("debian", "official"):
        raise BadInput(f"unknown base image source {source!r}; use 'debian' or 'official'")
    selected = [recipe(n) for n in names] if names else list(RECIPES)
    docker.require_daemon()
    codename = host_codename() if source == "debian" else ""
    mirrors = mirror_lines(host_apt_sources(), codename) if source == "debian" else []
    results = []
    for index, base in enumerate(selected, 1):
        progress(f"[{index}/{len(selected)}] {base.name}: {base.description}")
        if source == "official" and base.official_lacks:
            progress(f"  {base.official_lacks}: building {base.name} from Debian packages")
        if source == "official" and not base.official_lacks:
            if use_official(base):
                results.append(BaseBuild(base.name, base.official_image, "official", source="official"))
                continue
            progress(f"  no registry answered for {base.official_image}; building {base.name} from Debian packages")
            codename = codename or host_codename()
            mirrors = mirrors or mirror_lines(host_apt_sources(), codename)
            result = build_from_debian(base, namespace, mirrors, codename, force)
            result.action = "fallback"
        else:
            codename = codename or host_codename()
            mirrors = mirrors or mirror_lines(host_apt_sources(), codename)
            result = build_from_debian(base, namespace, mirrors, codename, force)
        results.append(result)
    return results


def image_refs(results: Iterable[BaseBuild]) -> dict[str, str]:
    """name -> image reference, for build args and compose image variables."""
    return {r.name: r.tag for r in results}
