"""The base-image recipes: apt sources parsing, input hashing, the mmdebstrap command."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import pytest

from analyticbot_ops import baseimages, docker, runner
from analyticbot_ops.errors import BadInput, DockerUnavailable, OpsError

DEB822 = """Types: deb
URIs: http://mirror.invalid/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

# a disabled one
Types: deb
URIs: http://other.invalid/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb-src
URIs: http://src.invalid/debian
Suites: bookworm
Components: main
"""


def test_deb822_keeps_enabled_binary_stanzas_only() -> None:
    sources = baseimages.parse_deb822_sources(DEB822)
    assert [s.uri for s in sources] == ["http://mirror.invalid/debian"]
    assert sources[0].suites == ("bookworm", "bookworm-updates")


def test_one_line_sources_strip_options_and_comments() -> None:
    text = "deb [arch=amd64 signed-by=/k.gpg] http://m.invalid/debian/ bookworm main # comment\n# deb http://x y z\n"
    sources = baseimages.parse_one_line_sources(text)
    assert sources == [baseimages.AptSource("http://m.invalid/debian", ("bookworm",), ("main",))]


def test_mirror_lines_keep_this_release_main_suites() -> None:
    sources = [
        baseimages.AptSource("http://a.invalid/debian", ("bookworm", "bookworm-updates", "trixie"), ("main",)),
        baseimages.AptSource("http://b.invalid/debian-security", ("bookworm-security",), ("main",)),
        baseimages.AptSource("http://c.invalid/extra", ("bookworm",), ("contrib",)),
    ]
    assert baseimages.mirror_lines(sources, "bookworm") == [
        "deb http://a.invalid/debian bookworm main",
        "deb http://a.invalid/debian bookworm-updates main",
        "deb http://b.invalid/debian-security bookworm-security main",
    ]


def test_no_matching_sources_is_one_clear_error() -> None:
    with pytest.raises(OpsError, match="no Debian 'bookworm' main suite"):
        baseimages.mirror_lines([], "bookworm")


def test_host_sources_read_both_formats(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("deb http://one.invalid/debian bookworm main\n")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    (tmp_path / "sources.list.d" / "ignored.disabled").write_text("deb http://no.invalid x main\n")
    uris = [s.uri for s in baseimages.host_apt_sources(tmp_path)]
    assert uris == ["http://one.invalid/debian", "http://mirror.invalid/debian"]


def test_codename_from_os_release(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text('NAME="Debian GNU/Linux"\nVERSION_CODENAME=bookworm\n')
    assert baseimages.host_codename(release) == "bookworm"
    release.write_text("NAME=Other\n")
    with pytest.raises(OpsError):
        baseimages.host_codename(release)


def test_inputs_hash_changes_with_mirror_and_packages() -> None:
    base = baseimages.recipe("python-runtime")
    first = baseimages.inputs_hash(base, ["deb http://a.invalid bookworm main"], "bookworm")
    assert first == baseimages.inputs_hash(base, ["deb http://a.invalid bookworm main"], "bookworm")
    assert first != baseimages.inputs_hash(base, ["deb http://b.invalid bookworm main"], "bookworm")
    other = baseimages.BaseRecipe(**{**base.__dict__, "packages": (*base.packages, "tzdata")})
    assert first != baseimages.inputs_hash(other, ["deb http://a.invalid bookworm main"], "bookworm")


def test_mmdebstrap_command_uses_extract_hooks_and_merged_usr() -> None:
    command = baseimages.mmdebstrap_command(
        baseimages.recipe("python-runtime"), "bookworm", ["deb http://m.invalid x main"]
    )
    assert "--variant=extract" in command
    assert f"--hook-dir={baseimages.MERGED_USR_HOOKS}" in command
    # customize hooks never run for the extract variant: every hook must be an extract hook
    assert not [arg for arg in command if arg.startswith("--customize-hook")]
    assert sum(arg.startswith("--extract-hook") for arg in command) == 2
    assert command[-3:] == ["bookworm", "-", "deb http://m.invalid x main"]


def test_unknown_recipe_lists_known_ones() -> None:
    with pytest.raises(BadInput, match="python-runtime"):
        baseimages.recipe("nope")


def test_every_recipe_names_an_official_stand_in_and_existing_hooks() -> None:
    for base in baseimages.RECIPES:
        assert ":" in base.official_image
        for script, *_ in base.hooks:
            assert (baseimages.HOOKS_DIR / script).is_file()


def test_monitoring_images_unpack_their_package_alone_before_pruning() -> None:
    """The monitoring packages depend on hundreds of MB (prometheus: JavaScript packages): --include gets
    only libc and busybox, the package itself is unpacked without its dependencies, then pruned."""
    for base in baseimages.MONITORING_RECIPES:
        assert base.packages == ("libc6", "busybox")
        (unpack, package, *_ui), (prune, binary), (common,) = base.hooks
        assert (unpack, prune, common) == ("unpack.sh", "monitoring.sh", "common.sh")
        assert binary == package and package.startswith("prometheus")
        assert f'ENTRYPOINT ["/usr/bin/{package}"]' in base.changes
        assert f"USER {baseimages.APP_UID}:{baseimages.APP_UID}" in base.changes
        command = baseimages.mmdebstrap_command(base, "bookworm", ["deb http://m.invalid bookworm main"])
        hooks = [arg for arg in command if arg.startswith("--extract-hook")]
        assert [h.split("'")[1].rsplit("/", 1)[1] for h in hooks] == ["unpack.sh", "monitoring.sh", "common.sh"]
    assert {b.name for b in baseimages.MONITORING_RECIPES} <= {b.name for b in baseimages.RECIPES}
    assert "libjs-moment-timezone" in baseimages.recipe("prometheus").hooks[0]


def test_every_image_has_a_size_budget() -> None:
    from analyticbot_ops.config import DEFAULTS

    budgets = DEFAULTS["ops"]["budgets_mb"]
    assert [b.name for b in baseimages.RECIPES if b.name not in budgets] == []
    assert budgets["prometheus"] == 60 and budgets["alertmanager"] == 32


def test_official_source_uses_the_official_image_where_a_registry_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(baseimages.docker, "require_daemon", lambda: "20.10")
    monkeypatch.setattr(baseimages, "use_official", lambda base: True)
    monkeypatch.setattr(baseimages, "build_from_debian", lambda *a, **k: pytest.fail("must not build"))
    results = baseimages.build_base_images(["python-runtime"], source="official")
    assert baseimages.image_refs(results) == {"python-runtime": "python:3.11-slim-bookworm"}
    assert results[0].action == "official"


def test_official_source_falls_back_to_debian_where_no_registry_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(baseimages.docker, "require_daemon", lambda: "20.10")
    monkeypatch.setattr(baseimages, "use_official", lambda base: False)
    monkeypatch.setattr(baseimages, "host_codename", lambda: "bookworm")
    monkeypatch.setattr(
        baseimages,
        "host_apt_sources",
        lambda: [baseimages.AptSource("http://m.invalid/debian", ("bookworm",), ("main",))],
    )
    built = []

    def fake_build(base, namespace, mirrors, codename, force):  # type: ignore[no-untyped-def]
        built.append((base.name, mirrors, codename))
        return baseimages.BaseBuild(base.name, base.tag(namespace), "built")

    monkeypatch.setattr(baseimages, "build_from_debian", fake_build)
    progress: list[str] = []
    results = baseimages.build_base_images(["python-runtime"], source="official", progress=progress.append)
    assert built == [("python-runtime", ["deb http://m.invalid/debian bookworm main"], "bookworm")]
    assert results[0].action == "fallback" and results[0].tag == "analyticbot/python-runtime:bookworm"
    assert any("no registry answered" in line for line in progress)


def test_unknown_source_is_bad_input() -> None:
    with pytest.raises(BadInput, match=r"debian.*official"):
        baseimages.build_base_images(source="registry")


# --- the host's apt configuration, from files ----------------------------------------------------------------------


def test_host_sources_read_list_files_in_the_directory_too(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "b-security.list").write_text(
        "deb http://security.invalid/debian-security bookworm-security main\n"
    )
    (tmp_path / "sources.list.d" / "a-debian.sources").write_text(DEB822)
    sources = baseimages.host_apt_sources(tmp_path)  # no sources.list at all
    assert [s.uri for s in sources] == ["http://mirror.invalid/debian", "http://security.invalid/debian-security"]
    assert baseimages.mirror_lines(sources, "bookworm") == [
        "deb http://mirror.invalid/debian bookworm main",
        "deb http://mirror.invalid/debian bookworm-updates main",
        "deb http://security.invalid/debian-security bookworm-security main",
    ]


def test_no_apt_configuration_is_no_sources(tmp_path: Path) -> None:
    assert baseimages.host_apt_sources(tmp_path / "missing") == []


def test_the_same_suite_from_two_files_is_one_mirror_line(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("deb http://m.invalid/debian bookworm main\n")
    (tmp_path / "sources.list.d" / "dup.list").write_text("deb [trusted=yes] http://m.invalid/debian/ bookworm main\n")
    assert baseimages.mirror_lines(baseimages.host_apt_sources(tmp_path), "bookworm") == [
        "deb http://m.invalid/debian bookworm main"
    ]


def test_codename_from_a_quoted_value_and_a_missing_file(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text('PRETTY_NAME="Debian GNU/Linux 12"\nVERSION_CODENAME="bookworm"\n')
    assert baseimages.host_codename(release) == "bookworm"
    with pytest.raises(OpsError, match="--source official"):
        baseimages.host_codename(tmp_path / "absent")


# --- building from Debian: mmdebstrap piped into docker import -----------------------------------------------------

DOCKER = "/usr/bin/docker"
MIRRORS = ["deb http://m.invalid/debian bookworm main"]
TAR = b"rootfs.tar\x00" + bytes(range(256)) * 4  # what mmdebstrap writes to its stdout


@pytest.fixture
def images(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, dict[str, Any]]:
    """A fake daemon's images (tag -> {labels, size}); mmdebstrap and its hooks are "installed"."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setattr(docker, "client", lambda: docker.DockerClient(DOCKER, "20.10.24", False))
    store: dict[str, dict[str, Any]] = {}

    def labels(tag: str) -> dict[str, str] | None:
        return dict(store[tag]["labels"]) if tag in store else None

    def size(tag: str) -> int:
        if tag not in store:
            raise OpsError(f"image {tag} does not exist; build it first")
        return int(store[tag]["size"])

    monkeypatch.setattr(docker, "image_labels", labels)
    monkeypatch.setattr(docker, "image_size", size)
    monkeypatch.setattr(docker, "require_daemon", lambda: "20.10.24")
    monkeypatch.setattr(baseimages.shutil, "which", lambda name: f"/usr/bin/{name}")
    hooks = tmp_path / "merged-usr"
    hooks.mkdir()
    monkeypatch.setattr(baseimages, "MERGED_USR_HOOKS", hooks)
    return store


def debian_fake(
    store: dict[str, dict[str, Any]],
    *,
    mmdebstrap_returncode: int = 0,
    mmdebstrap_stderr: bytes = b"",
    import_returncode: int = 0,
    import_stderr: str = "",
) -> tuple[runner.FakeRunner, list[bytes]]:
    """mmdebstrap writes TAR; `docker import` reads its stdin and, when it succeeds, tags an image with the
    LABEL of its --change arguments, as the daemon does."""
    piped: list[bytes] = []
    fake = runner.FakeRunner()
    fake.answers[("mmdebstrap",)] = runner.Completed([], mmdebstrap_returncode, TAR, mmdebstrap_stderr)

    def docker_import(call: runner.Call) -> runner.Completed[str]:
        assert call.stdin is not None, "docker import must read mmdebstrap's stdout"
        piped.append(call.stdin.read())
        if import_returncode == 0:
            changes = [call.argv[i + 1] for i, arg in enumerate(call.argv) if arg == "--change"]
            label = next(c for c in changes if c.startswith("LABEL "))
            store[call.argv[-1]] = {
                "labels": dict(re.findall(r'(\S+?)=("[^"]*"|\S+)', label[len("LABEL ") :])),
                "size": len(piped[-1]),
            }
        return runner.Completed(list(call.argv), import_returncode, "sha256:0123\n", import_stderr)

    def docker_rmi(call: runner.Call) -> runner.Completed[str]:
        store.pop(call.argv[-1], None)
        return runner.Completed(list(call.argv), 0, f"Untagged: {call.argv[-1]}\n", "")

    fake.answers[("docker", "import")] = docker_import
    fake.answers[("docker", "rmi")] = docker_rmi
    return fake, piped


def test_an_image_with_the_same_inputs_is_kept_without_running_anything(
    monkeypatch: pytest.MonkeyPatch, images: dict[str, dict[str, Any]]
) -> None:
    base = baseimages.recipe("redis")
    wanted = baseimages.inputs_hash(base, MIRRORS, "bookworm")
    images["ns/redis:bookworm"] = {"labels": {baseimages.INPUTS_LABEL: wanted}, "size": 42}
    monkeypatch.setattr(baseimages.shutil, "which", lambda name: None)  # not even mmdebstrap is needed
    fake = runner.FakeRunner()
    with runner.use(fake):
        result = baseimages.build_from_debian(base, "ns", MIRRORS, "bookworm", force=False)
    assert (result.name, result.tag, result.action, result.size, result.source) == (
        "redis",
        "ns/redis:bookworm",
        "kept",
        42,
        "debian",
    )
    assert fake.calls == []


def test_the_debian_tree_is_piped_into_docker_import_with_the_recipes_changes(
    images: dict[str, dict[str, Any]],
) -> None:
    base = baseimages.recipe("python-runtime")
    fake, piped = debian_fake(images)
    with runner.use(fake):
        result = baseimages.build_from_debian(base, "ns", MIRRORS, "bookworm", force=False)

    mmdebstrap, importer = fake.calls
    assert list(mmdebstrap.argv) == baseimages.mmdebstrap_command(base, "bookworm", MIRRORS)
    assert mmdebstrap.argv[-len(MIRRORS) - 2 :] == ("bookworm", "-", *MIRRORS)  # the tree goes to stdout
    assert piped == [TAR]  # no copy on disk: docker import reads the stream itself
    wanted = baseimages.inputs_hash(base, MIRRORS, "bookworm")
    assert list(importer.argv) == [
        DOCKER,
        "import",
        *[arg for change in base.changes for arg in ("--change", change)],
        "--change",
        f'LABEL {baseimages.INPUTS_LABEL}={wanted} org.opencontainers.image.description="{base.description}"',
        "-",
        "ns/python-runtime:bookworm",
    ]
    assert (result.action, result.tag, result.size) == ("built", "ns/python-runtime:bookworm", len(TAR))
    assert result.seconds >= 0
    # The label it wrote is what the next run compares: now nothing is rebuilt.
    assert images["ns/python-runtime:bookworm"]["labels"][baseimages.INPUTS_LABEL] == wanted
    with runner.use(runner.FakeRunner()) as again:
        assert baseimages.build_from_debian(base, "ns", MIRRORS, "bookworm", force=False).action == "kept"
    assert again.calls == []


@pytest.mark.parametrize(
    "labels",
    [{}, {baseimages.INPUTS_LABEL: "0000000000000000"}],
    ids=["unlabelled", "other-inputs"],
)
def test_an_image_from_other_inputs_is_rebuilt(images: dict[str, dict[str, Any]], labels: dict[str, str]) -> None:
    images["analyticbot/nginx:bookworm"] = {"labels": labels, "size": 1}
    fake, piped = debian_fake(images)
    with runner.use(fake):
        result = baseimages.build_from_debian(
            baseimages.recipe("nginx"), "analyticbot", MIRRORS, "bookworm", force=False
        )
    assert result.action == "built" and piped == [TAR]


def test_force_rebuilds_an_image_with_the_same_inputs(images: dict[str, dict[str, Any]]) -> None:
    base = baseimages.recipe("pebble")
    images["ns/pebble:bookworm"] = {
        "labels": {baseimages.INPUTS_LABEL: baseimages.inputs_hash(base, MIRRORS, "bookworm")},
        "size": 1,
    }
    fake, _ = debian_fake(images)
    with runner.use(fake):
        assert baseimages.build_from_debian(base, "ns", MIRRORS, "bookworm", force=True).action == "built"
    assert [Path(c.argv[0]).name for c in fake.calls] == ["mmdebstrap", "docker"]


def test_a_failed_mmdebstrap_names_the_line_that_explains_it(images: dict[str, dict[str, Any]]) -> None:
    stderr = (
        b"I: automatically chosen mode: root\n"
        b"cp: cannot stat '/tmp/x/postgres-entrypoint.sh': No such file or directory\n"
        b"E: setup failed: E: command failed: sh hook\n"
    )
    fake, _ = debian_fake(images, mmdebstrap_returncode=1, mmdebstrap_stderr=stderr, import_returncode=1)
    with runner.use(fake), pytest.raises(OpsError) as e:
        baseimages.build_from_debian(baseimages.recipe("postgres"), "ns", MIRRORS, "bookworm", force=False)
    assert str(e.value) == (
        "mmdebstrap failed for postgres: cp: cannot stat '/tmp/x/postgres-entrypoint.sh': No such file or directory"
    )


def test_a_failed_docker_import_is_one_line(images: dict[str, dict[str, Any]]) -> None:
    fake, _ = debian_fake(images, import_returncode=1, import_stderr="Error response from daemon: no space left\nmore")
    with runner.use(fake), pytest.raises(OpsError) as e:
        baseimages.build_from_debian(baseimages.recipe("redis"), "ns", MIRRORS, "bookworm", force=False)
    assert str(e.value) == "docker import failed for redis: Error response from daemon: no space left"
    assert images == {}


def test_docker_import_without_a_daemon_is_docker_unavailable(images: dict[str, dict[str, Any]]) -> None:
    fake, _ = debian_fake(
        images, import_returncode=1, import_stderr="Cannot connect to the Docker daemon at unix:///x. Is the daemon up?"
    )
    with runner.use(fake), pytest.raises(DockerUnavailable, match="not reachable"):
        baseimages.build_from_debian(baseimages.recipe("redis"), "ns", MIRRORS, "bookworm", force=False)


def test_an_image_imported_from_a_failed_mmdebstrap_is_not_kept(images: dict[str, dict[str, Any]]) -> None:
    base = baseimages.recipe("redis")
    fake, _ = debian_fake(images, mmdebstrap_returncode=1, mmdebstrap_stderr=b"tar: write error\n")
    with runner.use(fake), pytest.raises(OpsError, match="mmdebstrap failed for redis: tar: write error"):
        baseimages.build_from_debian(base, "ns", MIRRORS, "bookworm", force=False)
    # The error said the build failed: the next build must build again, not keep what that run imported.
    fake, piped = debian_fake(images)
    with runner.use(fake):
        result = baseimages.build_from_debian(base, "ns", MIRRORS, "bookworm", force=False)
    assert (result.action, piped) == ("built", [TAR])


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("mmdebstrap", "mmdebstrap is not installed: run scripts/bootstrap, or apt-get install mmdebstrap"),
        ("hooks", "is missing: mmdebstrap's hooks are needed (apt-get install mmdebstrap)"),
    ],
)
def test_missing_tools_are_named_before_anything_runs(
    monkeypatch: pytest.MonkeyPatch, images: dict[str, dict[str, Any]], tmp_path: Path, missing: str, message: str
) -> None:
    if missing == "mmdebstrap":
        monkeypatch.setattr(baseimages.shutil, "which", lambda name: None)
    else:
        monkeypatch.setattr(baseimages, "MERGED_USR_HOOKS", tmp_path / "no-hooks")
    fake = runner.FakeRunner()
    with runner.use(fake), pytest.raises(OpsError, match=re.escape(message)):
        baseimages.build_from_debian(baseimages.recipe("redis"), "ns", MIRRORS, "bookworm", force=False)
    assert fake.calls == []


@pytest.mark.parametrize(
    ("stderr", "line"),
    [
        ("I: chroot architecture amd64\nW: something\nE: apt-get failed\n", "E: apt-get failed"),
        ("I: x\nE: Unable to locate package nope\napt says more\n  \nE: tail\n", "apt says more"),
        ("", "(no output)"),
        ("I: only info\nW: and a warning\n", "(no output)"),
    ],
    ids=["only-e", "own-line-wins", "empty", "bookkeeping-only"],
)
def test_the_line_that_explains_a_failed_mmdebstrap(stderr: str, line: str) -> None:
    assert baseimages._last_error(stderr) == line


def test_without_an_own_line_the_first_error_explains_a_failed_mmdebstrap() -> None:
    stderr = "I: running apt-get\nE: Unable to locate package python3.11-minimal\nE: apt-get --yes install failed\n"
    assert baseimages._last_error(stderr) == "E: Unable to locate package python3.11-minimal"


# --- the official images -------------------------------------------------------------------------------------------


def test_use_official_pulls_quietly_with_a_timeout(images: dict[str, dict[str, Any]]) -> None:
    fake = runner.FakeRunner()
    fake.answer("docker", "pull", returncode=0)
    with runner.use(fake):
        assert baseimages.use_official(baseimages.recipe("postgres")) is True
    assert fake.commands() == ["docker pull --quiet postgres:15-bookworm"]
    assert fake.calls[0].timeout == 300


def test_use_official_is_false_where_no_registry_answers(images: dict[str, dict[str, Any]]) -> None:
    fake = runner.FakeRunner()
    fake.answer(
        "docker", "pull", stderr="Error response from daemon: Get https://registry-1.docker.io: dial tcp", returncode=1
    )
    with runner.use(fake):
        assert baseimages.use_official(baseimages.recipe("redis")) is False


def test_use_official_without_a_daemon_is_not_a_fallback(images: dict[str, dict[str, Any]]) -> None:
    fake = runner.FakeRunner()
    fake.answer("docker", "pull", stderr="Cannot connect to the Docker daemon at unix:///x.sock.", returncode=1)
    with runner.use(fake), pytest.raises(DockerUnavailable):
        baseimages.use_official(baseimages.recipe("redis"))


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """The host is a bookworm with one mirror (files under tmp_path); returns what was read, in order."""
    etc = tmp_path / "etc"
    (etc / "apt" / "sources.list.d").mkdir(parents=True)
    (etc / "apt" / "sources.list").write_text("deb http://deb.invalid/debian bookworm main contrib\n")
    (etc / "os-release").write_text("ID=debian\nVERSION_CODENAME=bookworm\n")
    read: list[str] = []
    codename = functools.partial(baseimages.host_codename, etc / "os-release")
    sources = functools.partial(baseimages.host_apt_sources, etc / "apt")
    monkeypatch.setattr(baseimages, "host_codename", lambda: read.append("os-release") or codename())
    monkeypatch.setattr(baseimages, "host_apt_sources", lambda: read.append("apt") or sources())
    return read


def test_build_base_images_from_debian_keeps_what_is_current_and_builds_the_rest(
    images: dict[str, dict[str, Any]], host: list[str]
) -> None:
    mirrors = ["deb http://deb.invalid/debian bookworm main"]
    redis = baseimages.recipe("redis")
    images["ns/redis:bookworm"] = {
        "labels": {baseimages.INPUTS_LABEL: baseimages.inputs_hash(redis, mirrors, "bookworm")},
        "size": 7,
    }
    fake, piped = debian_fake(images)
    messages: list[str] = []
    with runner.use(fake):
        results = baseimages.build_base_images(["redis", "nginx"], namespace="ns", progress=messages.append)
    assert [(r.name, r.action, r.source) for r in results] == [
        ("redis", "kept", "debian"),
        ("nginx", "built", "debian"),
    ]
    assert host == ["os-release", "apt"]  # read once for all images
    assert fake.calls[0].argv[-3:] == ("bookworm", "-", *mirrors)
    assert len(piped) == 1
    assert messages == [f"[1/2] redis: {redis.description}", f"[2/2] nginx: {baseimages.recipe('nginx').description}"]
    assert baseimages.image_refs(results) == {"redis": "ns/redis:bookworm", "nginx": "ns/nginx:bookworm"}


def test_build_base_images_without_names_builds_every_recipe(
    monkeypatch: pytest.MonkeyPatch, images: dict[str, dict[str, Any]], host: list[str]
) -> None:
    fake, piped = debian_fake(images)
    with runner.use(fake):
        results = baseimages.build_base_images()
    assert [r.name for r in results] == [r.name for r in baseimages.RECIPES]
    assert {r.action for r in results} == {"built"}
    assert len(piped) == len(baseimages.RECIPES)


def test_build_base_images_refuses_an_unknown_name_before_the_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docker, "require_daemon", lambda: pytest.fail("the daemon was asked"))
    with pytest.raises(BadInput, match="unknown base image 'alpine'"):
        baseimages.build_base_images(["redis", "alpine"])


def test_official_fallbacks_read_the_host_once(images: dict[str, dict[str, Any]], host: list[str]) -> None:
    fake, _ = debian_fake(images)
    fake.answer("docker", "pull", stderr="Error response from daemon: i/o timeout", returncode=1)
    messages: list[str] = []
    with runner.use(fake):
        results = baseimages.build_base_images(["redis", "pebble"], source="official", progress=messages.append)
    assert [(r.name, r.action, r.tag) for r in results] == [
        ("redis", "fallback", "analyticbot/redis:bookworm"),
        ("pebble", "fallback", "analyticbot/pebble:bookworm"),
    ]
    assert host == ["os-release", "apt"]  # not read before a pull failed, then only once
    assert "  no registry answered for redis:7-bookworm; building redis from Debian packages" in messages
    assert [c.split()[0:2] for c in fake.commands()] == [
        ["docker", "pull"],
        ["mmdebstrap", "--quiet"],
        ["docker", "import"],
        ["docker", "pull"],
        ["mmdebstrap", "--quiet"],
        ["docker", "import"],
    ]


def test_official_source_builds_postgres_from_debian_since_the_official_image_lacks_pgbackrest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(baseimages.docker, "require_daemon", lambda: "20.10")
    monkeypatch.setattr(baseimages, "use_official", lambda base: pytest.fail("must not pull postgres"))
    monkeypatch.setattr(baseimages, "host_codename", lambda: "bookworm")
    monkeypatch.setattr(
        baseimages,
        "host_apt_sources",
        lambda: [baseimages.AptSource("http://m.invalid/debian", ("bookworm",), ("main",))],
    )
    built: list[str] = []

    def fake_build(base, namespace, mirrors, codename, force):  # type: ignore[no-untyped-def]
        built.append(base.name)
        return baseimages.BaseBuild(base.name, base.tag(namespace), "built")

    monkeypatch.setattr(baseimages, "build_from_debian", fake_build)
    said: list[str] = []
    results = baseimages.build_base_images(["postgres"], source="official", progress=said.append)
    assert built == ["postgres"] and results[0].tag == "analyticbot/postgres:bookworm"
    assert any("has no pgBackRest" in line for line in said)
