"""Choosing a docker client that can build with BuildKit."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from docker import errors as sdk_errors

from analyticbot_ops import docker, engine, runner
from analyticbot_ops.errors import EXIT_NO_DOCKER, DockerUnavailable, OpsError


@pytest.fixture(autouse=True)
def clear_cache() -> None:
    docker.client.cache_clear()


def _use(monkeypatch: pytest.MonkeyPatch, clients: dict[str, docker.DockerClient | None]) -> None:
    monkeypatch.setattr(docker, "_candidate_paths", lambda: list(clients))
    monkeypatch.setattr(docker, "_probe", clients.get)


def test_new_client_without_buildx_is_passed_over_for_an_old_one(monkeypatch: pytest.MonkeyPatch) -> None:
    _use(
        monkeypatch,
        {
            "/usr/local/bin/docker": docker.DockerClient("/usr/local/bin/docker", "28.2.2", has_buildx=False),
            "/usr/bin/docker": docker.DockerClient("/usr/bin/docker", "20.10.24+dfsg1", has_buildx=False),
        },
    )
    assert docker.buildkit_client().path == "/usr/bin/docker"


def test_new_client_with_buildx_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    _use(monkeypatch, {"/x/docker": docker.DockerClient("/x/docker", "28.0.0", has_buildx=True)})
    assert docker.buildkit_client().path == "/x/docker"


def test_only_a_new_client_without_buildx_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    _use(monkeypatch, {"/x/docker": docker.DockerClient("/x/docker", "28.0.0", has_buildx=False)})
    with pytest.raises(DockerUnavailable, match="buildx"):
        docker.buildkit_client()


def test_no_client_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    _use(monkeypatch, {})
    with pytest.raises(DockerUnavailable, match="no docker client"):
        docker.client()


# --- probing the clients on this machine, through the runner ------------------------------

NO_DAEMON = "Cannot connect to the Docker daemon at unix:///x. Is the docker daemon running?"


@pytest.fixture(autouse=True)
def no_real_daemon(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.delenv("ANALYTICBOT_DOCKER", raising=False)
    docker.require_daemon.cache_clear()
    yield
    docker.client.cache_clear()
    docker.require_daemon.cache_clear()


def _machine(clients: dict[str, tuple[str, bool]]) -> runner.FakeRunner:
    """A FakeRunner answering `PATH --version` and `PATH buildx version` for each client: (version, has buildx)."""

    def version(call: runner.Call) -> runner.Completed[str]:
        found = clients.get(call.argv[0])
        if found is None:
            raise FileNotFoundError(call.argv[0])
        said = f"Docker version {found[0]}, build 297e128\n" if found[0] else ""
        return runner.Completed([], 0, said, "")

    def buildx(call: runner.Call) -> runner.Completed[str]:
        has = clients[call.argv[0]][1]
        return runner.Completed([], 0 if has else 1, "", "" if has else "docker: 'buildx' is not a docker command.")

    return runner.FakeRunner(answers={("docker", "--version"): version, ("docker", "buildx", "version"): buildx})


def test_probing_picks_the_first_client_that_builds_with_buildkit(monkeypatch: pytest.MonkeyPatch) -> None:
    paths = ["/usr/local/bin/docker", "/usr/bin/docker"]
    monkeypatch.setattr(docker, "_candidate_paths", lambda: paths)
    fake = _machine({paths[0]: ("28.2.2", False), paths[1]: ("20.10.24+dfsg1", False)})
    with runner.use(fake):
        chosen = docker.buildkit_client()
        assert docker.client() is chosen  # probed once per process
    assert chosen == docker.DockerClient("/usr/bin/docker", "20.10.24+dfsg1", has_buildx=False)
    assert fake.commands() == [
        "docker --version",
        "docker buildx version",
        "docker --version",
        "docker buildx version",
    ]
    assert [c.argv[0] for c in fake.calls] == [paths[0], paths[0], paths[1], paths[1]]
    assert all(c.timeout == 20 for c in fake.calls)


def test_a_new_client_with_buildx_wins_over_an_old_one(monkeypatch: pytest.MonkeyPatch) -> None:
    paths = ["/a/docker", "/b/docker"]
    monkeypatch.setattr(docker, "_candidate_paths", lambda: paths)
    with runner.use(_machine({paths[0]: ("28.2.2", True), paths[1]: ("20.10.24", False)})):
        assert docker.client() == docker.DockerClient("/a/docker", "28.2.2", has_buildx=True)


def test_only_new_clients_without_buildx_are_refused_for_builds_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    paths = ["/a/docker", "/b/docker"]
    monkeypatch.setattr(docker, "_candidate_paths", lambda: paths)
    with runner.use(_machine({paths[0]: ("27.5.1", False), paths[1]: ("28.0.0", False)})):
        assert docker.client().path == "/a/docker"  # any client will do for what is not a build
        with pytest.raises(DockerUnavailable) as raised:
            docker.buildkit_client()
    assert raised.value.code == EXIT_NO_DOCKER
    assert str(raised.value).startswith("docker 27.5.1 at /a/docker needs the buildx plugin for BuildKit builds")
    assert "docker-buildx" in str(raised.value)


def test_clients_that_are_missing_hang_or_print_nothing_are_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    paths = ["/gone/docker", "/hangs/docker", "/mute/docker", "/fine/docker"]
    monkeypatch.setattr(docker, "_candidate_paths", lambda: paths)
    fake = _machine({"/mute/docker": ("", True), "/fine/docker": ("20.10.5", False)})

    def hang(call: runner.Call) -> runner.Completed[str]:
        if call.argv[0] == "/hangs/docker":
            raise subprocess.TimeoutExpired(list(call.argv), 20)
        return fake.answers[("docker", "--version")](call)  # type: ignore[operator]

    with runner.use(runner.FakeRunner(answers={**fake.answers, ("docker", "--version"): hang})):
        assert docker.client().path == "/fine/docker"


def test_no_probe_answers_is_no_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docker, "_candidate_paths", lambda: ["/gone/docker"])
    with runner.use(_machine({})), pytest.raises(DockerUnavailable, match=r"^no docker client found on PATH"):
        docker.client()


def test_a_daemon_outage_does_not_hide_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    # `docker version` would fail for want of a daemon; `docker --version` never asks it.
    monkeypatch.setattr(docker, "_candidate_paths", lambda: ["/usr/bin/docker"])
    fake = runner.FakeRunner()
    fake.answer("docker", "version", stdout="28.2.2\n", stderr=NO_DAEMON, returncode=1)
    fake.answer("docker", "--version", stdout="Docker version 28.2.2, build e6534b4\n")
    fake.answer("docker", "buildx", "version", stdout="github.com/docker/buildx v0.21.1")
    with runner.use(fake):
        assert docker.client() == docker.DockerClient("/usr/bin/docker", "28.2.2", has_buildx=True)


def test_an_override_that_is_not_executable_is_no_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    not_executable = tmp_path / "docker"
    not_executable.write_text("#!/bin/sh\n")
    monkeypatch.setenv("ANALYTICBOT_DOCKER", str(not_executable))
    with pytest.raises(DockerUnavailable, match="no docker client"):
        docker.client()


def test_an_override_is_the_only_candidate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANALYTICBOT_DOCKER", "/opt/docker-20/docker")
    assert docker._candidate_paths() == ["/opt/docker-20/docker"]


def test_candidates_are_executable_and_each_binary_is_listed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # The docker module's view of the file system: PATH's docker is a link to /usr/bin/docker.
    links = {"/opt/link/docker": "/usr/bin/docker"}
    executable = {"/opt/link/docker", "/usr/bin/docker", "/usr/local/bin/docker"}
    fake_os = SimpleNamespace(
        environ={},
        X_OK=os.X_OK,
        access=lambda path, mode: mode == os.X_OK and path in executable,
        path=SimpleNamespace(realpath=lambda path: links.get(path, path)),
    )
    monkeypatch.setattr(docker, "os", fake_os)
    monkeypatch.setattr(docker.shutil, "which", lambda name: "/opt/link/docker" if name == "docker" else None)
    assert docker._candidate_paths() == ["/opt/link/docker", "/usr/local/bin/docker"]
    executable.discard("/usr/local/bin/docker")
    assert docker._candidate_paths() == ["/opt/link/docker"]
    monkeypatch.setattr(docker.shutil, "which", lambda _name: None)
    assert docker._candidate_paths() == ["/usr/bin/docker"]
    fake_os.environ["ANALYTICBOT_DOCKER"] = "/nowhere/docker"  # taken as given: probing will tell
    assert docker._candidate_paths() == ["/nowhere/docker"]


@pytest.mark.parametrize(
    ("version", "major", "buildkit_without_buildx"),
    [("20.10.24+dfsg1", 20, True), ("22.06.0-beta.0", 22, True), ("23.0.0", 23, False), ("28.2.2", 28, False)],
)
def test_major_version_decides_whether_buildx_is_needed(
    version: str, major: int, buildkit_without_buildx: bool
) -> None:
    assert docker._major(version) == major
    assert docker.DockerClient("/d", version, has_buildx=False).builds_with_buildkit is buildkit_without_buildx
    assert docker.DockerClient("/d", version, has_buildx=True).builds_with_buildkit


def test_an_unparsable_version_counts_as_major_zero() -> None:
    assert docker._major("unknown") == 0


# --- running docker -----------------------------------------------------------------------

CLIENT = docker.DockerClient("/opt/bin/docker", "28.2.2", has_buildx=True)


@pytest.fixture
def one_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docker, "_candidate_paths", lambda: [CLIENT.path])
    monkeypatch.setattr(docker, "_probe", lambda _path: CLIENT)


@pytest.mark.usefixtures("one_client")
def test_docker_runs_the_chosen_client_with_env_and_timeout() -> None:
    fake = runner.FakeRunner()
    fake.answer("docker", "image", "ls", stdout="img\n")
    with runner.use(fake):
        result = docker.docker(["image", "ls"], env={"DOCKER_BUILDKIT": "1"}, timeout=9)
    assert result.stdout == "img\n"
    assert fake.calls[0].argv == ("/opt/bin/docker", "image", "ls")
    assert (fake.calls[0].env, fake.calls[0].timeout, fake.calls[0].input) == ({"DOCKER_BUILDKIT": "1"}, 9, None)


@pytest.mark.usefixtures("one_client")
def test_docker_failure_is_one_line_unless_unchecked() -> None:
    fake = runner.FakeRunner()
    fake.answer("docker", "rmi", stderr="Error response from daemon: conflict\nmore", returncode=1)
    with runner.use(fake):
        with pytest.raises(OpsError, match=r"failed: Error response from daemon: conflict$"):
            docker.docker(["rmi", "x"])
        assert docker.docker(["rmi", "x"], check=False).returncode == 1


@pytest.mark.usefixtures("one_client")
def test_docker_with_bytes_on_stdin_returns_text() -> None:
    seen: list[object] = []

    def exec_(call: runner.Call) -> runner.Completed[bytes]:
        seen.append(call.input)
        return runner.Completed([], 0, b"caf\xc3\xa9 \xff\n", None)

    with runner.use(runner.FakeRunner(answers={("docker", "exec"): exec_})):
        result = docker.docker(["exec", "-i", "db", "psql"], input_bytes=b"secret")
    assert seen == [b"secret"]
    assert (result.stdout, result.stderr, result.returncode) == ("caf\u00e9 \ufffd\n", "", 0)
    assert result.args == ["/opt/bin/docker", "exec", "-i", "db", "psql"]


# --- reading through the Engine API -------------------------------------------------------


class FakeEngine:
    def __init__(self, images: dict[str, dict] | None = None, containers: list[dict] | None = None) -> None:
        self.images = images or {}
        self.listed = containers or []
        self.filters: list[object] = []
        self.versions = 0

    def inspect_image(self, name: str) -> dict:
        if name not in self.images:
            raise sdk_errors.ImageNotFound(f"No such image: {name}")
        return self.images[name]

    def history(self, tag: str) -> list[dict]:
        return self.images[tag]["History"]

    def containers(self, all: bool, filters: dict) -> list[dict]:
        self.filters.append((all, filters))
        return [{"Id": c["Id"]} for c in self.listed]

    def inspect_container(self, container_id: str) -> dict:
        return next(c for c in self.listed if c["Id"] == container_id)

    def version(self) -> dict:
        self.versions += 1
        return {"Version": "28.2.2"}


def _engine(monkeypatch: pytest.MonkeyPatch, fake: FakeEngine) -> FakeEngine:
    monkeypatch.setattr(engine, "api", lambda: fake)
    return fake


def test_require_daemon_asks_once(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _engine(monkeypatch, FakeEngine())
    assert docker.require_daemon() == docker.require_daemon() == "28.2.2"
    assert fake.versions == 1


def test_image_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    images = {
        "labelled": {"Config": {"Labels": {"org.opencontainers.image.revision": "abc"}}},
        "unlabelled": {"Config": {"Labels": None}},
        "bare": {"Config": None},
    }
    _engine(monkeypatch, FakeEngine(images))
    assert docker.image_labels("labelled") == {"org.opencontainers.image.revision": "abc"}
    assert docker.image_labels("unlabelled") == docker.image_labels("bare") == {}
    assert docker.image_labels("absent") is None
    assert docker.inspect("image", "bare") == {"Config": None}


def test_image_size_and_history(monkeypatch: pytest.MonkeyPatch) -> None:
    layers = [{"Size": 2048, "CreatedBy": "RUN pip install"}, {"Size": 0, "CreatedBy": "ENV A=1"}]
    _engine(monkeypatch, FakeEngine({"app:1": {"Size": 123456789, "History": layers}}))
    assert docker.image_size("app:1") == 123456789
    assert docker.image_history("app:1") == layers
    with pytest.raises(OpsError, match=r"^image app:2 does not exist; build it first$"):
        docker.image_size("app:2")


def test_containers_by_label(monkeypatch: pytest.MonkeyPatch) -> None:
    listed = [{"Id": "1", "Name": "/p-api-1"}, {"Id": "2", "Name": "/p-bot-1"}]
    fake = _engine(monkeypatch, FakeEngine(containers=listed))
    assert docker.containers_by_label("com.docker.compose.project=p") == listed
    assert fake.filters == [(True, {"label": "com.docker.compose.project=p"})]


def test_first_line_is_the_runners() -> None:
    assert docker.first_line("\n x \n") == "x"
