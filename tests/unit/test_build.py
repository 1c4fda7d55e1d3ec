"""Service builds: the BuildKit command line and the step accounting."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from analyticbot_ops import __version__, build, docker, imagespec, model, releases, runner
from analyticbot_ops.errors import EXIT_NO_DOCKER, BadInput, DockerUnavailable, OpsError
from analyticbot_ops.paths import REPO_ROOT

PLAIN = """#1 [internal] load build definition from Dockerfile
#1 DONE 0.0s
#5 [deps 1/3] COPY services/api/requirements.txt /tmp/requirements.txt
#5 CACHED
#6 [deps 2/3] RUN --mount=type=bind,source=.cache/wheels,target=/wheels python3 -m pip install
#6 CACHED
#7 [code 2/3] COPY services/common/analyticbot_common /opt/app/src/analyticbot_common
#7 DONE 0.1s
#8 [stage-2 2/3] COPY --from=deps /opt/app/deps /opt/app/deps
#8 CACHED
"""


def test_count_steps_counts_numbered_steps_and_cached_ones() -> None:
    assert build.count_steps(PLAIN) == (4, 3)


def test_build_command_has_no_network_labels_and_base_args() -> None:
    command = build.build_command("api", "ns/api:latest", {"python-runtime": "rt:1", "python-build": "bd:1"}, False)
    assert "--network=none" in command
    assert "SERVICE=api" in command
    assert "PYTHON_RUNTIME_IMAGE=rt:1" in command and "PYTHON_BUILD_IMAGE=bd:1" in command
    labels = [command[i + 1] for i, arg in enumerate(command) if arg == "--label"]
    assert {label.split("=", 1)[0] for label in labels} >= {
        "org.opencontainers.image.version",
        "org.opencontainers.image.revision",
        "org.opencontainers.image.created",
    }
    assert "--no-cache" not in command
    assert "--no-cache" in build.build_command("api", "t", {}, True)


def test_unknown_service_is_bad_input() -> None:
    with pytest.raises(BadInput, match="known: api, bot, mtproto, proxy"):
        build.check_service("frontend")


def test_every_service_has_a_fully_pinned_lock() -> None:
    for service in model.APPS:
        lines = [
            line.strip()
            for line in build.requirements_file(service).read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        assert lines, service
        assert all("==" in line for line in lines), service


def test_proxy_build_takes_the_nginx_base_and_no_service_arg() -> None:
    command = build.build_command("proxy", "ns/proxy:latest", {"nginx": "ngx:1", "python-runtime": "rt:1"}, False)
    assert "NGINX_IMAGE=ngx:1" in command
    assert not [arg for arg in command if arg.startswith(("SERVICE=", "PYTHON_"))]
    assert str(build.IMAGES["proxy"].dockerfile) in command


def test_labels_come_from_the_inputs_last_commit_never_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    import time as clock

    first = build.build_command("api", "t", {}, False)
    monkeypatch.setattr(clock, "time", lambda: 4_000_000_000.0)  # a wall clock 100 years on changes nothing
    assert build.build_command("api", "t", {}, False) == first
    labels = [first[i + 1] for i, arg in enumerate(first) if arg == "--label"]
    created = next(label for label in labels if label.startswith("org.opencontainers.image.created="))
    revision = next(label for label in labels if label.startswith("org.opencontainers.image.revision="))
    expected = build.source_revision(build.IMAGES["api"].inputs)
    assert created.endswith(expected.created) and revision.endswith(expected.revision)


def test_an_image_is_built_from_its_own_inputs_only() -> None:
    # The shared layers are pruned to every service's closure: the others' locks are inputs, their code is not.
    assert build.IMAGES["api"].inputs == (
        "services/Dockerfile",
        "services/build",
        "services/common",
        "services/api",
        "services/bot/requirements.txt",
        "services/mtproto/requirements.txt",
    )
    assert build.IMAGES["proxy"].inputs == ("nginx",)
    assert all(spec.inputs for spec in build.IMAGES.values())


# --- with a FakeRunner: no git, pip or docker runs -----------------------------------------------------------------

DOCKER = "/usr/bin/docker"
GIT_LOG = ("git", "log", "-1", "--format=%h %cI", "--abbrev=12", "--")
PY311 = "/opt/python3.11/bin/python3"


@pytest.fixture
def no_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    client = docker.DockerClient(DOCKER, "20.10.24", False)
    monkeypatch.setattr(docker, "client", lambda: client)
    monkeypatch.setattr(docker, "buildkit_client", lambda: client)
    monkeypatch.setattr(docker, "require_daemon", lambda: pytest.fail("the daemon was asked"))
    monkeypatch.setattr(docker, "image_size", lambda tag: pytest.fail(f"size of {tag} asked"))
    monkeypatch.setattr(docker, "inspect", lambda kind, name: pytest.fail(f"{kind} {name} inspected"))


def git_fake(log: str = "0123456789ab 2026-02-03T04:05:06+01:00\n", status: str = "") -> runner.FakeRunner:
    fake = runner.FakeRunner()
    fake.answer("git", "log", stdout=log)
    fake.answer("git", "status", stdout=status)
    return fake


def test_source_revision_is_the_inputs_last_commit_and_its_time() -> None:
    fake = git_fake()
    with runner.use(fake):
        assert build.source_revision(["services/api", "services/common"]) == build.SourceRevision(
            "0123456789ab", "2026-02-03T04:05:06+01:00"
        )
    assert [c.argv for c in fake.calls] == [
        (*GIT_LOG, "services/api", "services/common"),
        ("git", "status", "--porcelain", "--", "services/api", "services/common"),
    ]
    assert {c.cwd for c in fake.calls} == {REPO_ROOT}  # the repository, whatever the current directory


def test_uncommitted_changes_to_the_inputs_mark_the_revision_dirty() -> None:
    with runner.use(git_fake(status=" M services/api/src/app.py\n")):
        revision = build.source_revision(["services/api"])
    assert revision == build.SourceRevision("0123456789ab-dirty", "2026-02-03T04:05:06+01:00")


@pytest.mark.parametrize(
    ("log", "returncode"),
    [
        ("", 0),  # no commit touched the inputs
        ("fatal: not a git repository (or any of the parent directories): .git\n", 128),  # an unpacked tarball
        ("0123456789ab\n", 0),  # no time: not what was asked for
    ],
    ids=["no-commit", "not-a-checkout", "malformed"],
)
def test_without_a_usable_commit_the_labels_are_constant(log: str, returncode: int) -> None:
    fake = runner.FakeRunner()
    fake.answer("git", "log", stdout=log, returncode=returncode)
    with runner.use(fake):
        assert build.source_revision(["nginx"]) is build.UNKNOWN_SOURCE
    assert [c.argv[1] for c in fake.calls] == ["log"]  # status is not asked


def test_without_git_the_labels_are_constant() -> None:
    def missing(call: runner.Call) -> runner.Completed[str]:
        raise FileNotFoundError(call.argv[0])

    fake = runner.FakeRunner()
    fake.answers[("git",)] = missing
    with runner.use(fake):
        assert build.source_revision(["nginx"]) == build.SourceRevision("unknown", "1970-01-01T00:00:00Z")


def test_build_command_in_full() -> None:
    with runner.use(git_fake()):
        command = build.build_command("bot", "ns/bot:latest", {"python-build": "bd:1", "nginx": "ngx:1"}, False)
    assert command == [
        "build",
        "--progress=plain",
        "--network=none",
        "-f",
        str(build.IMAGES["bot"].dockerfile),
        "--build-arg",
        "SERVICE=bot",
        "--label",
        f"org.opencontainers.image.version={__version__}",
        "--label",
        "org.opencontainers.image.revision=0123456789ab",
        "--label",
        "org.opencontainers.image.created=2026-02-03T04:05:06+01:00",
        "--label",
        "org.opencontainers.image.title=analyticbot-bot",
        "-t",
        "ns/bot:latest",
        # only the bases this image takes, and only those given
        "--build-arg",
        "PYTHON_BUILD_IMAGE=bd:1",
        str(REPO_ROOT),  # the context is the repository (the wheelhouse under .cache/ is in it)
    ]


def test_build_command_labels_the_revision_of_the_services_own_inputs() -> None:
    fake = git_fake(status="?? services/certbot/new-file\n")
    with runner.use(fake):
        command = build.build_command("certbot", "t", {}, True)
    assert fake.calls[0].argv == (*GIT_LOG, *build.IMAGES["certbot"].inputs)
    assert "services/certbot" in build.IMAGES["certbot"].inputs
    assert "org.opencontainers.image.revision=0123456789ab-dirty" in command
    # certbot is a stage of the services' Dockerfile, built by name
    assert command[-4:] == ["--no-cache", "--target", "certbot", str(REPO_ROOT)]


def test_build_command_refuses_an_unknown_service_before_asking_git() -> None:
    fake = runner.FakeRunner()
    with runner.use(fake), pytest.raises(BadInput, match="unknown service 'web'"):
        build.build_command("web", "t", {}, False)
    assert fake.calls == []


def test_service_tag_is_namespaced_latest() -> None:
    assert build.service_tag("api") == "analyticbot/api:latest"
    assert build.service_tag("proxy", "registry.example/team") == "registry.example/team/proxy:latest"
    assert build.check_service("certbot") == "certbot"


def test_count_steps_ignores_internal_steps_and_counts_each_step_once() -> None:
    output = (
        "#2 [internal] load metadata for docker.io/library/python:3.11\n"
        "#4 [1/2] FROM analyticbot/python-runtime:bookworm\n"
        "#4 CACHED\n"
        "#4 [1/2] FROM analyticbot/python-runtime:bookworm\n"  # BuildKit repeats a step's header
        "#9 [2/2] RUN python3 -m compileall\n"
        "#9 0.512 Listing '/opt/app'...\n"
        "#9 DONE 0.9s\n"
        "#2 CACHED\n"  # an internal step's CACHED is no step of ours
    )
    assert build.count_steps(output) == (2, 1)
    assert build.count_steps("") == (0, 0)


# --- the wheelhouse ------------------------------------------------------------------------------------------------


@pytest.fixture
def wheels(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setattr(build, "WHEELS_DIR", tmp_path / "wheels")
    return tmp_path / "wheels"


def python_fake(version: str = "(3, 11)", pip_returncode: int = 0, pip_stderr: str = "") -> runner.FakeRunner:
    fake = runner.FakeRunner()
    fake.answer(Path(PY311).name, "-c", stdout=version + "\n")
    fake.answer(Path(PY311).name, "-m", "pip", "wheel", stderr=pip_stderr, returncode=pip_returncode)
    return fake


def lock_digest(service: str) -> str:
    return hashlib.sha256(build.requirements_file(service).read_bytes()).hexdigest()


def test_wheelhouse_builds_every_locked_wheel_without_dependencies_then_stamps(wheels: Path) -> None:
    fake = python_fake()
    messages: list[str] = []
    with runner.use(fake):
        target = build.build_wheelhouse("api", python=PY311, progress=messages.append)
    assert target == wheels / "api"
    assert [c.argv for c in fake.calls] == [
        (PY311, "-c", "import sys; print(sys.version_info[:2])"),
        (
            PY311,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--use-pep517",  # an sdist builds where the calling pip has no `wheel` (bootstrap's uv venv)
            "--no-deps",
            "--wheel-dir",
            str(wheels / "api"),
            "-r",
            str(build.requirements_file("api")),
        ),
    ]
    assert (target / build.WHEELHOUSE_STAMP).read_text() == lock_digest("api")
    assert messages[-1] == "  wheelhouse for api: building wheels from services/api/requirements.txt"


def test_an_unchanged_lock_skips_the_wheelhouse(wheels: Path) -> None:
    (wheels / "bot").mkdir(parents=True)
    (wheels / "bot" / build.WHEELHOUSE_STAMP).write_text(lock_digest("bot"))
    fake = python_fake()
    with runner.use(fake):
        assert build.build_wheelhouse("bot", python=PY311, progress=pytest.fail) == wheels / "bot"
    assert fake.calls == []


def test_a_changed_lock_rebuilds_the_wheelhouse(wheels: Path) -> None:
    (wheels / "bot").mkdir(parents=True)
    (wheels / "bot" / build.WHEELHOUSE_STAMP).write_text("digest of an older lock")
    fake = python_fake()
    with runner.use(fake):
        build.build_wheelhouse("bot", python=PY311, progress=lambda _m: None)
    assert [c.argv[1:4] for c in fake.calls] == [
        ("-c", "import sys; print(sys.version_info[:2])"),
        ("-m", "pip", "wheel"),
    ]
    assert (wheels / "bot" / build.WHEELHOUSE_STAMP).read_text() == lock_digest("bot")


@pytest.mark.parametrize("version", ["(3, 12)", "(3, 1)", ""], ids=["3.12", "3.1", "no-answer"])
def test_wheels_are_built_only_with_the_images_python(wheels: Path, version: str) -> None:
    fake = python_fake(version=version)
    with runner.use(fake), pytest.raises(OpsError) as e:
        build.build_wheelhouse("api", python=PY311, progress=pytest.fail)
    assert str(e.value) == f"wheels must be built with Python 3.11; {PY311} is not"
    assert len(fake.calls) == 1  # pip never ran
    assert not (wheels / "api").exists()


def test_a_failed_pip_is_one_line_and_leaves_no_stamp(wheels: Path) -> None:
    fake = python_fake(
        pip_returncode=1,
        pip_stderr="\nERROR: Could not find a version that satisfies the requirement anyio==4.16.0\nmore\n",
    )
    with runner.use(fake), pytest.raises(OpsError) as e:
        build.build_wheelhouse("api", python=PY311, progress=lambda _m: None)
    assert str(e.value) == (
        "building the api wheelhouse failed: ERROR: Could not find a version that satisfies the requirement "
        "anyio==4.16.0"
    )
    assert not (wheels / "api" / build.WHEELHOUSE_STAMP).exists()  # the next build tries again


# --- building a service --------------------------------------------------------------------------------------------


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch, no_docker: None) -> list[str]:
    """Wheelhouses are recorded, not built; every image is 123 MB."""
    wheelhouses: list[str] = []
    monkeypatch.setattr(build, "build_wheelhouse", lambda service, progress: wheelhouses.append(service))
    monkeypatch.setattr(docker, "image_size", lambda tag: 123_000_000)
    # Every image is there, its ID named after its tag (IMAGE_IDS changes one: a tag moved by another build).
    IMAGE_IDS.clear()
    monkeypatch.setattr(
        docker, "inspect", lambda kind, name: {"Id": IMAGE_IDS.get(name, f"sha256:{name}"), "Size": 123_000_000}
    )
    return wheelhouses


IMAGE_IDS: dict[str, str] = {}


def docker_build_fake(stderr: str = PLAIN, returncode: int = 0) -> runner.FakeRunner:
    fake = git_fake()
    fake.answer("docker", "build", stderr=stderr, returncode=returncode)
    return fake


def test_build_service_runs_buildkit_and_reports_its_cost(built: list[str]) -> None:
    fake = docker_build_fake()
    messages: list[str] = []
    with runner.use(fake):
        result = build.build_service(
            "api", base_images={"python-build": "bd:1"}, namespace="ns", progress=messages.append
        )
    assert built == ["common", "api", "bot", "mtproto", "certbot"]  # the wheelhouses first: the shared layers need all
    docker_call = fake.calls[-1]
    assert docker_call.argv[:2] == (DOCKER, "build")
    with runner.use(git_fake()):
        expected = build.build_command("api", "ns/api:latest", {"python-build": "bd:1"}, False)
    assert list(docker_call.argv[1:]) == expected
    assert docker_call.env == {"DOCKER_BUILDKIT": "1"}
    assert (result.service, result.tag, result.size, result.steps, result.cached) == (
        "api",
        "ns/api:latest",
        123_000_000,
        4,
        3,
    )
    assert result.seconds >= 0
    assert messages == []


def test_the_proxy_needs_no_wheelhouse(built: list[str]) -> None:
    fake = docker_build_fake(stderr="")
    with runner.use(fake):
        result = build.build_service("proxy", base_images={"nginx": "ngx:1"}, no_cache=True)
    assert built == []
    assert "--no-cache" in fake.calls[-1].argv and "NGINX_IMAGE=ngx:1" in fake.calls[-1].argv
    assert (result.steps, result.cached) == (0, 0)


def test_a_failed_build_shows_the_last_twelve_lines_and_names_the_last(built: list[str]) -> None:
    log = "\n".join(f"#{n} step {n}" for n in range(1, 21)) + "\n\nERROR: failed to solve: process did not complete\n"
    messages: list[str] = []
    with runner.use(docker_build_fake(stderr=log, returncode=1)), pytest.raises(OpsError) as e:
        build.build_service("bot", base_images={}, progress=messages.append)
    assert str(e.value) == "building bot failed: ERROR: failed to solve: process did not complete"
    assert messages == [
        *(f"  | #{n} step {n}" for n in range(10, 21)),
        "  | ERROR: failed to solve: process did not complete",
    ]


def test_a_silent_failed_build_says_no_output(built: list[str]) -> None:
    with runner.use(docker_build_fake(stderr="", returncode=1)), pytest.raises(OpsError, match=r"failed: no output$"):
        build.build_service("mtproto", base_images={})


def test_a_build_without_a_daemon_is_docker_unavailable(built: list[str]) -> None:
    fake = docker_build_fake(stderr="Cannot connect to the Docker daemon at unix:///x.sock.", returncode=1)
    with runner.use(fake), pytest.raises(DockerUnavailable, match="Docker daemon is not reachable"):
        build.build_service("proxy", base_images={})


def test_a_client_without_buildkit_is_refused_before_the_wheelhouse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docker, "client", lambda: docker.DockerClient("/usr/local/bin/docker", "24.0.7", False))
    monkeypatch.setattr(build, "build_wheelhouse", lambda service, progress: pytest.fail("wheelhouse built"))
    fake = runner.FakeRunner()
    with runner.use(fake), pytest.raises(DockerUnavailable, match="needs the buildx plugin") as e:
        build.build_service("api", base_images={})
    assert e.value.code == EXIT_NO_DOCKER
    assert fake.calls == []


def test_build_services_checks_names_then_builds_each_and_records_them(
    monkeypatch: pytest.MonkeyPatch, built: list[str]
) -> None:
    daemon: list[bool] = []
    monkeypatch.setattr(docker, "require_daemon", lambda: daemon.append(True) or "20.10.24")
    recorded: list[dict[str, str]] = []

    def record_build(tags: dict[str, str]) -> dict[str, str]:
        recorded.append(dict(tags))
        return {service: f"{tag.rsplit(':', 1)[0]}:id-0123" for service, tag in tags.items()}

    monkeypatch.setattr(releases, "record_build", record_build)
    messages: list[str] = []
    fake = docker_build_fake()
    with runner.use(fake):
        results = build.build_services(["proxy", "api"], base_images={}, namespace="ns", progress=messages.append)
    assert daemon == [True]
    assert [r.tag for r in results] == ["ns/proxy:latest", "ns/api:latest"]
    assert [c.argv[c.argv.index("-t") + 1] for c in fake.calls if c.argv[1:2] == ("build",)] == [
        "ns/proxy:latest",
        "ns/api:latest",
    ]
    assert recorded == [{"proxy": "ns/proxy:latest", "api": "ns/api:latest"}]
    assert messages == [
        "[1/2] building proxy",
        "[2/2] building api",
        "  proxy: ns/proxy:id-0123 (what this checkout's deploys run)",
        "  api: ns/api:id-0123 (what this checkout's deploys run)",
    ]


def test_build_services_refuses_an_unknown_service_before_asking_the_daemon(no_docker: None) -> None:
    fake = runner.FakeRunner()
    with runner.use(fake), pytest.raises(BadInput, match="unknown service 'worker'"):
        build.build_services(["api", "worker"], base_images={})
    assert fake.calls == []


def test_a_failed_build_stops_the_rest_and_records_nothing(monkeypatch: pytest.MonkeyPatch, built: list[str]) -> None:
    monkeypatch.setattr(docker, "require_daemon", lambda: "20.10.24")
    monkeypatch.setattr(releases, "record_build", lambda tags: pytest.fail("recorded"))
    fake = docker_build_fake(stderr="ERROR: boom", returncode=1)
    with runner.use(fake), pytest.raises(OpsError, match="building api failed: ERROR: boom"):
        build.build_services(["api", "bot"], base_images={}, progress=lambda _m: None)
    # Every wheelhouse before the context's digest is taken, then api's own call (a no-op on a real stamp);
    # nothing for bot.
    assert built == [*imagespec.PYTHON_WHEELHOUSES, *imagespec.PYTHON_WHEELHOUSES]


def test_the_wheelhouses_are_made_before_the_inputs_are_recorded(
    monkeypatch: pytest.MonkeyPatch, built: list[str]
) -> None:
    """A wheelhouse is part of the build context: made after the digest, the record would name inputs that
    the next run never sees again, and a fresh clone's first rerun would ask BuildKit once more."""
    monkeypatch.setattr(docker, "require_daemon", lambda: "20.10.24")
    monkeypatch.setattr(releases, "record_build", lambda tags: tags)
    digests_after: list[int] = []
    monkeypatch.setattr(build, "context_digest", lambda: digests_after.append(len(built)) or "ctx")
    with runner.use(docker_build_fake()):
        build.build_services(["api"], base_images={}, progress=lambda _m: None)
    assert digests_after == [len(imagespec.PYTHON_WHEELHOUSES)]


# --- no rebuild of an image whose inputs are unchanged ----------------------------------------------------------


def _builds(fake: runner.FakeRunner) -> list[str]:
    return [c.argv[c.argv.index("-t") + 1] for c in fake.calls if c.argv[1:2] == ("build",)]


def _build_twice(monkeypatch: pytest.MonkeyPatch, between: Any = lambda: None, **options: Any) -> list[str]:
    monkeypatch.setattr(docker, "require_daemon", lambda: "20.10.24")
    monkeypatch.setattr(releases, "record_build", lambda tags: tags)
    fake = docker_build_fake()
    with runner.use(fake):
        first = build.build_services(["proxy", "api"], base_images={"nginx": "ngx:1"}, progress=lambda _m: None)
        assert _builds(fake) == ["analyticbot/proxy:latest", "analyticbot/api:latest"] and not any(
            r.kept for r in first
        )
        between()
        messages: list[str] = []
        second = build.build_services(
            ["proxy", "api"], base_images={"nginx": "ngx:1"}, progress=messages.append, **options
        )
    assert [r.kept for r in second] == [
        tag not in _builds(fake)[2:] for tag in ("analyticbot/proxy:latest", "analyticbot/api:latest")
    ]
    return _builds(fake)[2:]


def test_a_rerun_with_the_same_inputs_asks_buildkit_nothing(monkeypatch: pytest.MonkeyPatch, built: list[str]) -> None:
    assert _build_twice(monkeypatch) == []


def test_a_changed_context_file_rebuilds(monkeypatch: pytest.MonkeyPatch, built: list[str]) -> None:
    monkeypatch.setattr(build, "context_digest", lambda: "before")
    rebuilt = _build_twice(monkeypatch, lambda: monkeypatch.setattr(build, "context_digest", lambda: "after"))
    assert rebuilt == ["analyticbot/proxy:latest", "analyticbot/api:latest"]


def test_a_new_base_image_rebuilds_only_what_is_built_on_it(monkeypatch: pytest.MonkeyPatch, built: list[str]) -> None:
    rebuilt = _build_twice(monkeypatch, lambda: IMAGE_IDS.update({"ngx:1": "sha256:new-nginx"}))
    assert rebuilt == ["analyticbot/proxy:latest"]


def test_a_tag_that_names_another_image_now_is_rebuilt(monkeypatch: pytest.MonkeyPatch, built: list[str]) -> None:
    rebuilt = _build_twice(monkeypatch, lambda: IMAGE_IDS.update({"analyticbot/api:latest": "sha256:other"}))
    assert rebuilt == ["analyticbot/api:latest"]


def test_a_lost_or_broken_record_rebuilds(monkeypatch: pytest.MonkeyPatch, built: list[str]) -> None:
    def damage() -> None:
        records = sorted(build.BUILD_RECORDS.iterdir())
        records[0].write_text("{not json")
        records[1].unlink()

    assert len(_build_twice(monkeypatch, damage)) == 2


def test_no_cache_always_builds(monkeypatch: pytest.MonkeyPatch, built: list[str]) -> None:
    assert len(_build_twice(monkeypatch, no_cache=True)) == 2


def test_the_context_digest_sees_an_edit_and_ignores_bytecode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "REPO_ROOT", tmp_path)
    (tmp_path / "services" / "api" / "__pycache__").mkdir(parents=True)
    (tmp_path / "services" / "api" / "tests").mkdir()
    code = tmp_path / "services" / "api" / "app.py"
    code.write_text("x = 1\n")
    before = build.context_digest(["services"])
    (tmp_path / "services" / "api" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "services" / "api" / "tests" / "test_app.py").write_text("")
    (tmp_path / "services" / "api" / "stray.pyc").write_bytes(b"\0")
    assert build.context_digest(["services"]) == before
    code.write_text("x = 22\n")
    assert build.context_digest(["services"]) != before
