"""The Engine API through the Docker SDK: None for what does not exist, one-line errors for the rest."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import docker
import pytest
import requests
from docker import errors as sdk_errors

from analyticbot_ops import engine
from analyticbot_ops.errors import EXIT_FAILED, EXIT_NO_DOCKER, DockerUnavailable, OpsError

SOCKET = "unix:///nonexistent/docker.sock"
NO_SOCKET = requests.ConnectionError("('Connection aborted.', FileNotFoundError(2, 'No such file or directory'))")
REFUSED = requests.ConnectionError(
    "HTTPConnectionPool(host='10.0.0.9', port=2375): Max retries exceeded with url: /version (Caused by "
    "NewConnectionError('<urllib3.connection.HTTPConnection object>: Failed to establish a new connection: "
    "[Errno 111] Connection refused'))"
)
DENIED = requests.ConnectionError("('Connection aborted.', PermissionError(13, 'Permission denied'))")


class FakeAPI:
    """What engine.api() returns in these tests: answers from dicts, or raises what `fail` names."""

    def __init__(self, **objects: Any) -> None:
        self.objects = objects
        self.fail: BaseException | None = None
        self.requests: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def _answer(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self.requests.append((method, args, kwargs))
        if self.fail is not None:
            raise self.fail
        table = self.objects.get(method, {})
        key = args[0] if args else None
        if callable(table):
            return table(*args, **kwargs)
        if key not in table:
            raise sdk_errors.NotFound(f"No such object: {key}")
        return table[key]

    def inspect_image(self, name: str) -> Any:
        return self._answer("inspect_image", name)

    def inspect_container(self, name: str) -> Any:
        return self._answer("inspect_container", name)

    def inspect_volume(self, name: str) -> Any:
        return self._answer("inspect_volume", name)

    def inspect_network(self, name: str) -> Any:
        return self._answer("inspect_network", name)

    def containers(self, **kwargs: Any) -> Any:
        return self._answer("containers", **kwargs)

    def history(self, tag: str) -> Any:
        return self._answer("history", tag)

    def logs(self, container: str, **kwargs: Any) -> Any:
        return self._answer("logs", container, **kwargs)

    def version(self) -> Any:
        return self._answer("version")


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DOCKER_HOST", SOCKET)
    for name in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        monkeypatch.delenv(name, raising=False)
    engine._client.cache_clear()
    yield
    engine._client.cache_clear()


def _serve(monkeypatch: pytest.MonkeyPatch, fake: FakeAPI) -> FakeAPI:
    monkeypatch.setattr(engine, "api", lambda: fake)
    return fake


# --- the client -------------------------------------------------------------------------


class RecordingClient:
    made: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, **kwargs: Any) -> None:
        RecordingClient.made.append(kwargs)


def test_the_client_negotiates_its_version_and_reaches_what_docker_host_names(monkeypatch: pytest.MonkeyPatch) -> None:
    RecordingClient.made = []
    monkeypatch.setattr(engine.sdk, "APIClient", RecordingClient)
    first = engine.api()
    assert engine.api() is first  # one per address, reused
    assert RecordingClient.made == [{"version": "auto", "timeout": engine.API_TIMEOUT, "base_url": SOCKET}]
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.9:2375")
    assert engine.api() is not first
    assert RecordingClient.made[-1]["base_url"] == "tcp://10.0.0.9:2375"


def test_the_unit_tests_guard_stops_a_real_client_before_it_asks_the_daemon(no_real_docker: list[str]) -> None:
    # No fake here: engine.api() makes the SDK's own APIClient, which conftest's guard refuses, and the
    # AssertionError is not mistaken for a daemon that is not there (DockerUnavailable).
    with pytest.raises(AssertionError, match=f"^a unit test reached the Docker Engine API .*{SOCKET}"):
        engine.inspect("image", "x")
    with pytest.raises(AssertionError, match=r"^a unit test reached the Docker Engine API"):
        docker.from_env()  # any other way to a client too
    assert len(no_real_docker) == 2
    no_real_docker.clear()  # provoked on purpose: the guard's teardown check passes


@pytest.mark.parametrize(
    ("failure", "why"),
    [
        (sdk_errors.DockerException(f"Error while fetching server API version: {NO_SOCKET}"), "no such socket"),
        (REFUSED, "connection refused"),
        (sdk_errors.DockerException(f"Error while fetching server API version: {DENIED}"), "permission denied"),
    ],
)
def test_a_client_that_cannot_be_made_is_docker_unavailable(
    monkeypatch: pytest.MonkeyPatch, failure: Exception, why: str
) -> None:
    def refuse(**_kwargs: Any) -> None:
        raise failure

    monkeypatch.setattr(engine.sdk, "APIClient", refuse)
    with pytest.raises(DockerUnavailable) as raised:
        engine.api()
    assert raised.value.code == EXIT_NO_DOCKER
    assert str(raised.value).startswith(f"Docker daemon is not reachable at {SOCKET}: {why}")
    assert "\n" not in str(raised.value)
    # A failure is not cached: the next call tries again and may succeed.
    monkeypatch.setattr(engine.sdk, "APIClient", RecordingClient)
    assert isinstance(engine.api(), RecordingClient)


def test_without_docker_host_the_default_socket_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST")
    fake = _serve(monkeypatch, FakeAPI())
    fake.fail = NO_SOCKET
    with pytest.raises(
        DockerUnavailable, match=r"^Docker daemon is not reachable at the default socket: no such socket$"
    ):
        engine.inspect("image", "x")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("('Connection aborted.', FileNotFoundError(2, 'No such file or directory'))", "no such socket"),
        ("[Errno 2] No such file or directory: '/run/docker.sock'", "no such socket"),
        ("Failed to establish a new connection: [Errno 111] Connection refused", "connection refused"),
        ("('Connection aborted.', ConnectionRefusedError(111))", "connection refused"),
        ("('Connection aborted.', PermissionError(13, 'Permission denied'))", "permission denied"),
        ("\nRead timed out. (read timeout=30)\nmore", "Read timed out. (read timeout=30)"),
    ],
)
def test_why_names_a_cause_a_person_can_act_on(text: str, why: str) -> None:
    assert engine._why(Exception(text)).startswith(why)


# --- call -------------------------------------------------------------------------------


def _raises(exc: BaseException) -> Any:
    def request(*_args: Any, **_kwargs: Any) -> Any:
        raise exc

    return request


def test_call_passes_arguments_and_returns_the_answer() -> None:
    assert engine.call(lambda a, *, b: (a, b), 1, b=2) == (1, 2)


@pytest.mark.parametrize(
    "missing", [sdk_errors.NotFound("No such container: x"), sdk_errors.ImageNotFound("No such image: x")]
)
def test_call_of_something_that_does_not_exist_is_none(missing: Exception) -> None:
    assert engine.call(_raises(missing)) is None


def test_call_without_a_daemon_is_docker_unavailable() -> None:
    with pytest.raises(DockerUnavailable, match=f"^Docker daemon is not reachable at {SOCKET}: connection refused$"):
        engine.call(_raises(REFUSED))


def test_an_api_error_is_one_line_with_the_daemons_explanation() -> None:
    error = sdk_errors.APIError("500 Server Error", explanation="driver failed programming\nsecond line")
    with pytest.raises(OpsError) as raised:
        engine.call(_raises(error))
    assert str(raised.value) == "Docker API: driver failed programming"
    assert raised.value.code == EXIT_FAILED and not isinstance(raised.value, DockerUnavailable)


def test_an_api_error_without_explanation_quotes_the_error() -> None:
    with pytest.raises(OpsError, match=r"^Docker API: 500 Server Error$"):
        engine.call(_raises(sdk_errors.APIError("500 Server Error")))


@pytest.mark.parametrize(
    "failure",
    [sdk_errors.DockerException("\nInvalid filter 'x'\n"), requests.ReadTimeout("Invalid filter 'x' (read timeout)")],
)
def test_other_sdk_and_http_errors_are_ops_errors(failure: Exception) -> None:
    with pytest.raises(OpsError, match=r"^Docker API: Invalid filter 'x'") as raised:
        engine.call(_raises(failure))
    assert not isinstance(raised.value, DockerUnavailable)


def test_a_programming_error_is_not_swallowed() -> None:
    with pytest.raises(KeyError):
        engine.call(_raises(KeyError("Id")))


# --- what the toolkit reads -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["image", "container", "volume", "network"])
def test_inspect_asks_the_matching_endpoint(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    fake = _serve(monkeypatch, FakeAPI(**{f"inspect_{kind}": {"thing": {"Id": kind}}}))
    assert engine.inspect(kind, "thing") == {"Id": kind}
    assert engine.inspect(kind, "other") is None
    assert [r[0] for r in fake.requests] == [f"inspect_{kind}"] * 2


def test_inspect_of_an_unknown_kind_is_refused() -> None:
    with pytest.raises(KeyError):
        engine.inspect("plugin", "x")


def test_containers_lists_by_label_then_inspects_each_and_drops_the_vanished(monkeypatch: pytest.MonkeyPatch) -> None:
    listed = [{"Id": "a1"}, {"Id": "gone"}, {"Id": "b2"}]
    fake = _serve(
        monkeypatch,
        FakeAPI(
            containers=lambda **_kw: listed,
            inspect_container={"a1": {"Id": "a1", "Name": "/p-api-1"}, "b2": {"Id": "b2", "Name": "/p-bot-1"}},
        ),
    )
    found = engine.containers("com.docker.compose.project=p")
    assert [c["Name"] for c in found] == ["/p-api-1", "/p-bot-1"]
    assert fake.requests[0] == ("containers", (), {"all": True, "filters": {"label": "com.docker.compose.project=p"}})


def test_containers_of_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    _serve(monkeypatch, FakeAPI(containers=lambda **_kw: []))
    assert engine.containers("x=y") == []


def test_history_is_the_layers_or_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    layers = [{"Size": 10, "CreatedBy": "RUN x"}, {"Size": 0, "CreatedBy": "CMD y"}]
    _serve(monkeypatch, FakeAPI(history={"img:1": layers}))
    assert engine.history("img:1") == layers
    assert engine.history("img:absent") == []


def test_logs_are_text_from_both_streams_with_a_tail(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _serve(monkeypatch, FakeAPI(logs={"p-api-1": b"started\n\xffbad byte\n"}))
    assert engine.logs("p-api-1", tail=5) == "started\n\ufffdbad byte\n"
    assert fake.requests[0] == ("logs", ("p-api-1",), {"stdout": True, "stderr": True, "tail": 5})
    assert engine.logs("absent") == ""
    assert fake.requests[-1][2]["tail"] == 40


def test_server_version(monkeypatch: pytest.MonkeyPatch) -> None:
    _serve(monkeypatch, FakeAPI(version=lambda: {"Version": "28.2.2", "ApiVersion": "1.50"}))
    assert engine.server_version() == "28.2.2"


def test_server_version_without_an_answer_is_docker_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    _serve(monkeypatch, FakeAPI(version=lambda: {}))
    with pytest.raises(DockerUnavailable, match=f"^Docker daemon is not reachable at {SOCKET}$"):
        engine.server_version()


def test_server_version_when_the_daemon_goes_away(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _serve(monkeypatch, FakeAPI())
    fake.fail = DENIED
    with pytest.raises(DockerUnavailable, match="permission denied") as raised:
        engine.server_version()
    assert raised.value.code == EXIT_NO_DOCKER


# --- exec, for a healthcheck the toolkit runs itself -----------------------------------------------------------


class ExecAPI(FakeAPI):
    def __init__(self, exit_code: int | None, gone: bool = False) -> None:
        super().__init__()
        self.exit_code, self.gone = exit_code, gone

    def exec_create(self, container: str, argv: list[str], **kwargs: Any) -> Any:
        self.requests.append(("exec_create", (container, argv), kwargs))
        if self.gone:
            raise sdk_errors.NotFound(f"No such container: {container}")
        return {"Id": "e1"}

    def exec_start(self, exec_id: str) -> bytes:
        self.requests.append(("exec_start", (exec_id,), {}))
        return b"PONG\n"

    def exec_inspect(self, exec_id: str) -> Any:
        return {"ExitCode": self.exit_code, "Running": False}


@pytest.mark.parametrize("code", [0, 1])
def test_exec_exit_code_runs_the_command_and_reads_its_code(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    fake = _serve(monkeypatch, ExecAPI(code))
    assert engine.exec_exit_code("c1", ["redis-cli", "ping"]) == code
    assert [r[0] for r in fake.requests] == ["exec_create", "exec_start"]
    assert fake.requests[0][1] == ("c1", ["redis-cli", "ping"])


def test_exec_in_a_container_that_is_gone_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    _serve(monkeypatch, ExecAPI(0, gone=True))
    assert engine.exec_exit_code("c1", ["true"]) is None


def test_exec_without_an_exit_code_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    _serve(monkeypatch, ExecAPI(None))
    assert engine.exec_exit_code("c1", ["true"]) is None
