"""Operating the live prod-mode stack under a steady client (20+ requests/s through the proxy, every
response checked): a rerun with nothing changed, a new api release, a rolling restart, a proxy reload and
a broken release each drop no request; the broken one rolls back by itself and says why."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from analyticbot_ops import compose, deploy, docker, model, releases, rollout
from analyticbot_ops.errors import BadInput, OpsError
from tests.sandbox import RunningStack, SteadyClients, create_channel


@pytest.fixture
def client(prod_stack: RunningStack) -> Iterator[SteadyClients]:
    """Two steady clients on one channel: a new connection per request, and one keep-alive connection."""
    channel = f"steady_{uuid.uuid4().hex[:8]}"
    create_channel(prod_stack, channel)
    steady = SteadyClients(prod_stack, channel)
    steady.start()
    time.sleep(1)  # they are under way before the action starts
    yield steady
    steady.finish()


def _ids(stack: RunningStack) -> dict[str, str]:
    return {s.service: s.container for s in compose.service_states(stack.project).values() if s.status == "running"}


def _container_ids(stack: RunningStack) -> set[str]:
    return {str(i["Id"]) for i in compose.project_containers(stack.project) if i["State"]["Running"]}


def _assert_served(client: SteadyClients, seconds: float) -> None:
    for mode, (ok, failures) in client.finish().items():
        assert failures == [], (mode, failures[:5])
        assert ok >= 20 * seconds * 0.8, f"{mode}: only {ok} requests in {seconds:.1f} s"


@pytest.fixture(scope="module")
def release_images(run_id: str) -> Iterator[dict[str, str]]:
    """Two more api images built on this run's: a new release (code the same, a new layer: a new image
    ID), and a broken one whose app cannot even be imported (its migrations are fine)."""
    images = {"next": f"abtest-{run_id}/api:next", "broken": f"abtest-{run_id}/api:broken"}
    recipes = {
        "next": f"FROM analyticbot/api:latest\nENV RELEASE_MARKER={run_id}\n",
        "broken": "FROM analyticbot/api:latest\nENV APP_MODULE=analyticbot_api.main:no_such_app\n",
    }
    client = docker.buildkit_client().path
    for name, tag in images.items():
        subprocess.run([client, "build", "-q", "-t", tag, "-"], input=recipes[name], text=True, check=True)
    yield images
    docker.docker(["rmi", "-f", *images.values()], check=False)


def _with_api(stack: RunningStack, image: str) -> compose.Stack:
    return stack.reloaded(API_IMAGE=image)


def test_a_rerun_with_nothing_changed_recreates_nothing(prod_stack: RunningStack, client: SteadyClients) -> None:
    before = _container_ids(prod_stack)
    started = time.monotonic()
    messages: list[str] = []
    deploy.up(prod_stack.stack, timeout=120, progress=messages.append)
    elapsed = time.monotonic() - started
    assert _container_ids(prod_stack) == before
    assert all(f"{s}: unchanged, left running" in messages for s in prod_stack.stack.running), messages
    _assert_served(client, elapsed)


def test_a_new_api_release_rolls_and_rolls_back_without_a_failed_request(
    prod_stack: RunningStack, client: SteadyClients, release_images: dict[str, str]
) -> None:
    old = _ids(prod_stack)
    first = releases.history(prod_stack.project)[-1]
    started = time.monotonic()
    try:
        deploy.up(_with_api(prod_stack, release_images["next"]), timeout=120)
        now = _ids(prod_stack)
        assert now["api"] != old["api"] and len(rollout.containers(prod_stack.stack, "api")) == 1
        assert {s: c for s, c in now.items() if s != "api"} == {s: c for s, c in old.items() if s != "api"}
        assert releases.history(prod_stack.project)[-1].images["API_IMAGE"] == release_images["next"]
    finally:
        # `invoke rollback`: the release before the current one, deployed (rolled) again.
        back = releases.choose(prod_stack.project, None)
        assert back.images == first.images
        deploy.up(prod_stack.reloaded(**back.images), timeout=120)
    api = docker.inspect("container", _ids(prod_stack)["api"])
    assert api is not None and api["Config"]["Image"] == first.images["API_IMAGE"]
    _assert_served(client, time.monotonic() - started)


def test_restarting_the_api_rolls_it(prod_stack: RunningStack, client: SteadyClients) -> None:
    old = _ids(prod_stack)["api"]
    started = time.monotonic()
    rollout.roll(prod_stack.stack, "api", timeout=120)
    assert _ids(prod_stack)["api"] != old
    _assert_served(client, time.monotonic() - started)


def test_restarting_the_bot_rolls_it_while_its_webhook_path_answers(prod_stack: RunningStack) -> None:
    old = _ids(prod_stack)["bot"]
    probe = SteadyClients(prod_stack, "", path="/bot/health/live")
    probe.start()
    time.sleep(1)
    started = time.monotonic()
    rollout.roll(prod_stack.stack, "bot", timeout=120)
    assert _ids(prod_stack)["bot"] != old
    _assert_served(probe, time.monotonic() - started)


def test_a_proxy_reload_drops_nothing(prod_stack: RunningStack, client: SteadyClients) -> None:
    proxy = _ids(prod_stack)["proxy"]
    started = time.monotonic()
    for _ in range(3):
        rollout.reload_proxy(prod_stack.stack)
        time.sleep(0.5)
    assert _ids(prod_stack)["proxy"] == proxy  # reloaded, never restarted
    _assert_served(client, time.monotonic() - started)


def test_a_broken_release_rolls_back_by_itself_and_says_why(
    prod_stack: RunningStack, client: SteadyClients, release_images: dict[str, str]
) -> None:
    old = _ids(prod_stack)["api"]
    started = time.monotonic()
    with pytest.raises(OpsError) as failure:
        deploy.up(_with_api(prod_stack, release_images["broken"]), timeout=60)
    message = str(failure.value)
    assert "rolled back" in message and f"{old} keeps serving" in message, message
    assert "no_such_app" in message  # the new container's own last log lines
    # Its state with, once it stopped, its exit code, and how often its policy restarted it.
    assert re.search(r"did not become ready \([^)]*restarts \d+\); its last log lines:", message), message
    assert [rollout.name_of(i) for i in rollout.containers(prod_stack.stack, "api")] == [old]
    _assert_served(client, time.monotonic() - started)


def test_the_proxy_is_never_recreated_without_allow_downtime(prod_stack: RunningStack) -> None:
    before = _container_ids(prod_stack)
    changed = prod_stack.reloaded(EXTRA_SERVER_NAMES="localhost x.test")
    with pytest.raises(BadInput, match="--allow-downtime"):
        deploy.up(changed, timeout=60)
    assert _container_ids(prod_stack) == before


# --- upstream keepalive: an upstream group of the running containers, with the service name behind it ------------


def _include(stack: RunningStack, service: str) -> str:
    proxy = _ids(stack)["proxy"]
    return rollout._read_runtime(proxy, f"/tmp/nginx-runtime/upstream-{service}.conf")


def _address(stack: RunningStack, service: str) -> str:
    return rollout.address_of(stack.stack, rollout.containers(stack.stack, service)[0])


def _reads(stack: RunningStack, count: int, deadline: float = 30.0) -> list[float]:
    """`count` summary reads in a row through the proxy, each on a new connection, once the first answers 200
    (within `deadline`); the seconds each took. Any non-200 after the first fails the test."""
    channel = f"ka_{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    while True:
        try:
            create_channel(stack, channel)
            break
        except (OSError, RuntimeError):
            assert time.monotonic() - started < deadline, "the api never answered through the proxy"
            time.sleep(0.5)
    token = stack.token("read")
    seconds = []
    for _ in range(count):
        connection = stack.connection()
        began = time.monotonic()
        try:
            connection.request("GET", f"/api/channels/{channel}/summary", headers={"Authorization": f"Bearer {token}"})
            response = connection.getresponse()
            assert response.status == 200, (response.status, response.read()[:80])
            response.read()
        finally:
            connection.close()
        seconds.append(time.monotonic() - began)
    return seconds


def test_after_a_deploy_the_proxy_keeps_connections_to_the_running_containers(prod_stack: RunningStack) -> None:
    deploy.up(prod_stack.stack, timeout=120)
    for service in ("api", "bot"):
        include = _include(prod_stack, service)
        assert f"server {_address(prod_stack, service)}:8000 max_fails=1" in include, include
        assert f"keepalive {model.UPSTREAM_KEEPALIVE};" in include and "backup;" in include
    # nginx keeps its connections to the api open between requests: fewer than one new one per request.
    _reads(prod_stack, 5)
    before = _api_connections_accepted(prod_stack)
    _reads(prod_stack, 40)
    assert _api_connections_accepted(prod_stack) - before < 20


def _api_connections_accepted(stack: RunningStack) -> int:
    """TCP connections the api's container has accepted so far (its network namespace's PassiveOpens)."""
    container = _ids(stack)["api"]
    script = "import re;print(re.search(r'Tcp: .*\\nTcp: (.*)', open('/proc/net/snmp').read()).group(1).split()[5])"
    return int(docker.docker(["exec", container, "python3", "-c", script]).stdout.strip())


def test_a_proxy_that_starts_before_the_api_serves_it_by_name(prod_stack: RunningStack) -> None:
    try:
        prod_stack.stack.compose("stop", "api")
        docker.docker(["restart", "--time", "5", _ids(prod_stack)["proxy"]])  # its runtime files start afresh
        assert _include(prod_stack, "api") == 'map "" $api_target { default "api:8000"; }\n'
        prod_stack.stack.compose("start", "api")
        assert len(_reads(prod_stack, 10)) == 10  # resolved per request: served once the api is there
    finally:
        deploy.up(prod_stack.stack, timeout=120)
    assert f"server {_address(prod_stack, 'api')}:8000" in _include(prod_stack, "api")  # and kept alive again


def test_an_api_that_comes_back_on_another_address_is_still_served(prod_stack: RunningStack) -> None:
    deploy.up(prod_stack.stack, timeout=120)
    old = _address(prod_stack, "api")
    assert f"server {old}:8000" in _include(prod_stack, "api")
    frontend = f"{prod_stack.project}_frontend"
    holder = f"{prod_stack.project}-holder"
    try:
        # Recreated behind the toolkit's back (a `docker compose up` by hand), on another address: a placeholder
        # holds the old one while Compose starts the new container, then lets it go, so the old address answers
        # nothing at all (the worst case: a connect timeout, not a refusal).
        prod_stack.stack.compose("rm", "--stop", "--force", "-v", "api")
        docker.docker(["run", "-d", "--name", holder, "--network", frontend, "--ip", old,
                       "--entrypoint", "python3", prod_stack.stack.settings["API_IMAGE"], "-c",
                       "import time; time.sleep(600)"])  # fmt: skip
        prod_stack.stack.compose("up", "-d", "--no-deps", "--no-build", "api")
        docker.docker(["rm", "-f", "-v", holder])
        assert _address(prod_stack, "api") != old
        compose.wait_healthy(prod_stack.stack, ["api"], 60)
        seconds = _reads(prod_stack, 20)
        # The first read may wait out one connect timeout (2 s) on the old address before the name answers;
        # then the old address is skipped (fail_timeout) and the rest are quick.
        assert max(seconds) < 5 and sorted(seconds)[-2] < 1.0, seconds
    finally:
        docker.docker(["rm", "-f", "-v", holder], check=False)
        deploy.up(prod_stack.stack, timeout=120)
    assert f"server {_address(prod_stack, 'api')}:8000" in _include(prod_stack, "api")
