"""The stack file for `docker stack deploy` (swarm/render.py), rendered from the real compose files merged as
`docker-compose config` prints them (tests/unit/swarm_support.py): what Swarm refuses or ignores is dropped or
translated, the api rolls start-first, the data stays on the labelled node, secrets are versioned and 0400."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from analyticbot_ops import model
from analyticbot_ops.paths import COMPOSE_DIR
from analyticbot_ops.swarm import render
from tests.unit import swarm_support as support

# The stack these tests render: the base files (the monitoring and backup overlays have their own tests below).
SWARM_SERVICES = model.services(monitoring=False, backup=False)

REFS = {variable: f"172.29.7.2:5000/ns/{variable.lower()}@sha256:{'ab' * 32}" for variable in support.IMAGES}
ALL_SECRETS = sorted({name for s in SWARM_SERVICES for name in support.swarm_secrets(s)})


def _secret_files(tmp_path: Path, names: list[str] | None = None) -> dict[str, Path]:
    folder = tmp_path / "secrets"
    folder.mkdir(exist_ok=True)
    files = {}
    for name in ALL_SECRETS if names is None else names:
        files[name] = folder / name
        files[name].write_text(f"value of {name}")
    return files


def _tls(tmp_path: Path) -> Path:
    tls = tmp_path / "tls"
    tls.mkdir(exist_ok=True)
    (tls / "fullchain.pem").write_text("CHAIN")
    (tls / "privkey.pem").write_text("KEY")
    return tls


def _render(tmp_path: Path, merged: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "project": support.PROJECT,
        "images": REFS,
        "secret_files": _secret_files(tmp_path),
        "tls_dir": _tls(tmp_path),
        "redis_conf": COMPOSE_DIR / "redis" / "redis.conf",
        "http_port": 80,
        "https_port": 443,
        **kwargs,
    }
    return render.render(merged or support.merged_config(support.settings(tmp_path)), **arguments)


@pytest.fixture
def stack(tmp_path: Path) -> dict[str, Any]:
    return _render(tmp_path)


def test_the_input_is_shaped_like_compose_config() -> None:
    # The translation below is only meaningful on what Compose gives: bind mounts as absolute host paths.
    merged = support.merged_config(support.settings(Path("/srv/ab")))
    assert (
        f"{COMPOSE_DIR}/redis/redis.conf:/usr/local/etc/redis/redis.conf:ro" in merged["services"]["redis"]["volumes"]
    )
    assert "/srv/ab/tls:/etc/nginx/tls:ro" in merged["services"]["proxy"]["volumes"]
    assert merged["services"]["api"]["pids_limit"] == 256 and merged["services"]["api"]["depends_on"]


def test_every_service_of_the_model_is_in_the_stack_with_its_pinned_image(stack: dict[str, Any]) -> None:
    assert stack["version"] == "3.9"
    assert set(stack["services"]) == {s.name for s in SWARM_SERVICES} | {render.EDGE_TLS}
    for name, service in stack["services"].items():
        assert service["image"] == REFS[render.spec_of(name).image_variable], name
    assert stack["services"][render.EDGE_TLS]["image"] == stack["services"]["proxy"]["image"]  # the proxy's part
    assert stack["services"]["migrate"]["image"] == stack["services"]["api"]["image"]  # a job shares its app's image


def test_what_swarm_refuses_or_ignores_is_dropped(tmp_path: Path) -> None:
    merged = support.merged_config(support.settings(tmp_path))
    merged["services"]["bot"].update(container_name="ab-bot", build={"context": "../services/bot"})
    stack = _render(tmp_path, merged)
    for name, service in stack["services"].items():
        for key in ("depends_on", "container_name", "build", "restart", "security_opt", "pids_limit", "tmpfs"):
            assert key not in service, (name, key)
        # What Swarm does apply stays as Compose has it.
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
        assert service["logging"]["options"] == {"max-size": "10m", "max-file": "3"}, name
    assert stack["services"]["postgres"]["stop_signal"] == "SIGINT"
    assert stack["services"]["postgres"]["user"] == f"{model.APP_UID}:{model.APP_UID}"


def test_the_input_is_left_as_it_was(tmp_path: Path) -> None:
    merged = support.merged_config(support.settings(tmp_path))
    before = copy.deepcopy(merged)
    _render(tmp_path, merged)
    assert merged == before


def test_limits_carry_pids_and_cpus_as_text(stack: dict[str, Any]) -> None:
    limits = {name: s["deploy"]["resources"]["limits"] for name, s in stack["services"].items()}
    assert limits.pop(render.EDGE_TLS) == {"cpus": "0.05", "memory": "16M", "pids": 16}  # a copy, then asleep
    assert limits["api"] == {"cpus": "1.5", "memory": "512M", "pids": 256}  # the prod overlay's limits
    assert limits["postgres"] == {"cpus": "1.5", "memory": "1G", "pids": 256}
    assert limits["redis"] == {"cpus": "0.5", "memory": "256M", "pids": 256}
    assert all(isinstance(limit["cpus"], str) and limit["pids"] == 256 for limit in limits.values())


def test_a_service_without_limits_or_pids_gets_empty_limits(tmp_path: Path) -> None:
    merged = support.merged_config(support.settings(tmp_path))
    del merged["services"]["bot"]["deploy"]
    del merged["services"]["bot"]["pids_limit"]
    assert _render(tmp_path, merged)["services"]["bot"]["deploy"]["resources"] == {"limits": {}}


def test_tmpfs_becomes_a_mount_and_one_owned_for_the_service_user_is_dropped(stack: dict[str, Any]) -> None:
    tmp = {"type": "tmpfs", "target": "/tmp"}
    for name, service in stack["services"].items():
        assert tmp in service["volumes"], name
    # /var/run/postgresql:uid=10001,... would be a root-owned 0755 folder in Swarm: gone, the socket moves.
    postgres = stack["services"]["postgres"]
    assert not any("postgresql" in str(v) and "data" not in str(v) for v in postgres["volumes"])
    assert postgres["command"] == ["postgres", "-c", "unix_socket_directories=/tmp"]


@pytest.mark.parametrize(
    ("entry", "mount"),
    [
        ("/tmp", {"type": "tmpfs", "target": "/tmp"}),
        ("/cache:size=64m", {"type": "tmpfs", "target": "/cache"}),
        ("/run/app:uid=10001,gid=10001", None),
        ("/var/run/postgresql:mode=0700", None),
    ],
)
def test_a_tmpfs_entry(entry: str, mount: dict[str, str] | None) -> None:
    assert render._tmpfs(entry) == mount


def test_bind_mounts_are_dropped_and_named_volumes_kept(stack: dict[str, Any]) -> None:
    services = stack["services"]
    assert services["postgres"]["volumes"] == [
        "pgdata:/var/lib/postgresql/data:rw",
        {"type": "tmpfs", "target": "/tmp"},
    ]
    assert services["redis"]["volumes"] == ["redisdata:/data:rw", {"type": "tmpfs", "target": "/tmp"}]
    assert services["proxy"]["volumes"] == [
        "acme-webroot:/var/www/acme:ro",
        {"type": "tmpfs", "target": "/tmp"},
        {
            "type": "volume",
            "source": "edge-tls",
            "target": "/etc/nginx/tls",
            "read_only": True,
            "volume": {"nocopy": True},
        },
    ]
    for name, service in services.items():
        assert not any(str(v).startswith("/") for v in service["volumes"]), name
    assert {k: v for k, v in stack["volumes"].items() if k != "edge-tls"} == {
        "pgdata": {},
        "redisdata": {},
        "acme-webroot": {},
        "letsencrypt": {},
    }


def test_a_service_with_neither_volume_nor_tmpfs_has_no_volumes_key(tmp_path: Path) -> None:
    merged = support.merged_config(support.settings(tmp_path))
    del merged["services"]["bot"]["tmpfs"]
    merged["services"]["mtproto"]["tmpfs"] = ["/state:uid=10001"]
    stack = _render(tmp_path, merged)
    assert "volumes" not in stack["services"]["bot"] and "volumes" not in stack["services"]["mtproto"]


def test_networks_are_sorted_names_on_fixed_overlays(stack: dict[str, Any]) -> None:
    services = stack["services"]
    # The proxy's fixed address has no meaning on an overlay; its alias, the public name, stays.
    assert services["proxy"]["networks"] == {"backend": {}, "frontend": {"aliases": ["proxy.localdomain"]}}
    assert services["api"]["networks"] == ["database", "frontend"]
    assert services["bot"]["networks"] == ["backend", "frontend"]
    assert services["mtproto"]["networks"] == ["backend", "database"]
    assert services["postgres"]["networks"] == services["migrate"]["networks"] == ["database"]
    assert stack["networks"] == {
        "frontend": {"driver": "overlay", "internal": False, "ipam": {"config": [{"subnet": "10.120.0.0/24"}]}},
        "backend": {"driver": "overlay", "internal": False, "ipam": {"config": [{"subnet": "10.121.0.0/24"}]}},
        "database": {"driver": "overlay", "internal": True, "ipam": {"config": [{"subnet": "10.122.0.0/24"}]}},
        "edge-tls": {"driver": "overlay", "internal": True, "ipam": {"config": [{"subnet": "10.125.0.0/28"}]}},
    }


def test_every_service_uses_dns_round_robin_and_one_replica_but_the_http_apps_two_and_the_edge(
    stack: dict[str, Any],
) -> None:
    for name, service in stack["services"].items():
        assert service["deploy"]["endpoint_mode"] == "dnsrr", name
        if name not in ("proxy", render.EDGE_TLS):  # one on each edge node (below)
            assert service["deploy"]["replicas"] == (2 if name in ("api", "bot") else 1), name


def test_the_api_and_the_bot_roll_start_first_and_roll_back_on_failure(stack: dict[str, Any]) -> None:
    for name in ("api", "bot"):
        deploy = stack["services"][name]["deploy"]
        assert deploy["update_config"] == {
            "parallelism": 1,
            "order": "start-first",
            "failure_action": "rollback",
            "monitor": "15s",
        }, name
        assert deploy["rollback_config"] == {"parallelism": 1, "order": "start-first"}, name


def test_singletons_stop_first(stack: dict[str, Any]) -> None:
    for name in ("postgres", "redis", "mtproto"):
        deploy = stack["services"][name]["deploy"]
        assert deploy["update_config"] == {"order": "stop-first", "failure_action": "rollback", "monitor": "15s"}
        assert "rollback_config" not in deploy, name
        assert deploy["replicas"] == 1, name


def test_the_migrate_job_is_never_rolled_back_by_swarm(stack: dict[str, Any]) -> None:
    # It exits by design; a rollback would run the previous spec (an old password's secret) again.
    deploy = stack["services"]["migrate"]["deploy"]
    assert deploy["update_config"] == {"order": "stop-first", "failure_action": "continue"}
    assert "rollback_config" not in deploy and deploy["replicas"] == 1


def test_the_proxy_runs_once_on_every_edge_node_and_rolls_one_edge_at_a_time(stack: dict[str, Any]) -> None:
    deploy = stack["services"]["proxy"]["deploy"]
    assert deploy["mode"] == "global" and "replicas" not in deploy
    assert deploy["placement"] == {"constraints": ["node.labels.analyticbot.edge == true"]}
    # Its ports are its node's: the old task stops before the new one starts, one node at a time.
    assert deploy["update_config"] == {
        "parallelism": 1,
        "order": "stop-first",
        "failure_action": "rollback",
        "monitor": "15s",
    }
    assert deploy["rollback_config"] == {"parallelism": 1, "order": "stop-first"}
    assert deploy["restart_policy"] == {"condition": "any", "delay": "1s"}
    # Stopped gracefully: the requests in flight are answered before the task goes.
    proxy = stack["services"]["proxy"]
    assert (proxy["stop_signal"], proxy["stop_grace_period"]) == ("SIGQUIT", "15s")
    assert proxy["environment"]["ACME_SOLVER"] == "acme-solver:8402"


def test_the_data_services_stay_on_the_labelled_node(stack: dict[str, Any]) -> None:
    for name, service in stack["services"].items():
        placement = service["deploy"].get("placement")
        if render.spec_of(name).kind == "data":
            assert placement == {"constraints": ["node.labels.analyticbot.data == true"]}, name
        elif name not in ("proxy", render.EDGE_TLS):  # the edge's (above)
            assert placement is None, name


def test_the_migrate_job_is_retried_on_failure_and_the_rest_always_restart(stack: dict[str, Any]) -> None:
    for name, service in stack["services"].items():
        policy = service["deploy"]["restart_policy"]
        if name == "migrate":
            assert policy == {"condition": "on-failure", "delay": "2s", "max_attempts": 10}
        else:
            assert policy == {"condition": "any", "delay": "1s"}, name


def test_forwarded_headers_are_trusted_from_the_frontend_overlay(stack: dict[str, Any]) -> None:
    services = stack["services"]
    assert services["api"]["environment"]["FORWARDED_ALLOW_IPS"] == "10.120.0.0/24"
    assert services["bot"]["environment"]["FORWARDED_ALLOW_IPS"] == "10.120.0.0/24"
    assert "FORWARDED_ALLOW_IPS" not in services["mtproto"]["environment"]
    # The rest of the environment is Compose's.
    assert services["api"]["environment"]["POSTGRES_USER"] == "analyticbot_api"
    assert services["redis"]["environment"] == {}  # none in Compose: an empty mapping


def test_the_proxy_publishes_in_host_mode_on_the_given_ports(tmp_path: Path) -> None:
    proxy = _render(tmp_path, http_port=9080, https_port=9443)["services"]["proxy"]
    assert proxy["ports"] == [
        {"target": 8080, "published": 9080, "protocol": "tcp", "mode": "host"},
        {"target": 8443, "published": 9443, "protocol": "tcp", "mode": "host"},
    ]
    assert "secrets" not in proxy  # the TLS pair comes through edge-tls (below)
    # The api's and the bot's replicas as kept-alive upstream groups, which the proxy keeps up to date itself.
    assert proxy["environment"]["UPSTREAM_TASKS"] == "api:8091 bot:8092"
    assert proxy["environment"]["UPSTREAM_IDLE_SECONDS"] == "4"
    assert proxy["environment"]["UPSTREAM_NETWORK"] == f"{support.PROJECT}_frontend"  # where the api and bot are


def test_the_tls_pair_reaches_each_edge_proxy_through_edge_tls_in_memory(stack: dict[str, Any]) -> None:
    """A new certificate is a start-first update of edge-tls, which holds no port, and a reload of each proxy,
    never a restart of a proxy that holds its node's ports."""
    proxy, edge_tls = stack["services"]["proxy"], stack["services"][render.EDGE_TLS]
    assert proxy["environment"]["TLS_WATCH"] == "/etc/nginx/tls/current"
    assert edge_tls["entrypoint"] == ["/usr/local/bin/edge-tls"]
    assert edge_tls["secrets"] == [
        {"source": "tls_fullchain", "uid": "10001", "gid": "10001", "mode": 0o400},
        {"source": "tls_privkey", "uid": "10001", "gid": "10001", "mode": 0o400},
    ]
    mounted = {"type": "volume", "source": "edge-tls", "target": "/edge-tls", "volume": {"nocopy": True}}
    assert mounted in edge_tls["volumes"]
    # The volume is memory only, the app user's alone: the key never reaches a node's disk.
    assert stack["volumes"]["edge-tls"] == {
        "driver": "local",
        "driver_opts": {"type": "tmpfs", "device": "tmpfs", "o": "size=1m,uid=10001,gid=10001,mode=0700"},
    }
    deploy = edge_tls["deploy"]
    assert deploy["mode"] == "global" and deploy["placement"] == proxy["deploy"]["placement"]  # beside each proxy
    assert deploy["update_config"]["order"] == "start-first" and "ports" not in edge_tls
    assert edge_tls["read_only"] is True and edge_tls["cap_drop"] == ["ALL"] and edge_tls["user"] == "10001:10001"
    # Its own internal overlay, no other member: it reaches nothing.
    assert edge_tls["networks"] == ["edge-tls"] and stack["networks"]["edge-tls"]["internal"] is True
    assert not any("edge-tls" in str(s.get("networks")) for n, s in stack["services"].items() if n != "edge-tls")
    assert "$$(busybox readlink /edge-tls/current)" in edge_tls["healthcheck"]["test"][-1]


def test_each_service_mounts_its_secrets_0400_for_the_service_user(stack: dict[str, Any]) -> None:
    for service in SWARM_SERVICES:
        if service.kind == "proxy":
            continue
        mounted = stack["services"][service.name]["secrets"]
        assert [m["source"] for m in mounted] == sorted(support.swarm_secrets(service)), service.name
        for mount in mounted:
            assert mount == {"source": mount["source"], "uid": "10001", "gid": "10001", "mode": 0o400}


def test_only_secrets_whose_file_is_given_are_mounted_or_declared(tmp_path: Path) -> None:
    # An optional secret left empty is not given (Swarm refuses an empty secret).
    given = [n for n in ALL_SECRETS if n not in ("stripe_secret_key", "openai_api_key", "redis_acl")]
    stack = _render(tmp_path, secret_files=_secret_files(tmp_path, given))
    api = [m["source"] for m in stack["services"]["api"]["secrets"]]
    assert api == ["jwt_secret_key", "postgres_api_password", "redis_password"]
    assert "secrets" not in stack["services"]["redis"]  # its only one was not given
    assert set(stack["secrets"]) == {*given, "tls_fullchain", "tls_privkey"}


def test_without_the_backup_overlay_no_backup_secret_is_mounted_even_when_its_file_is_given(tmp_path: Path) -> None:
    # What is mounted is what the merged compose config mounts: without the backup overlay, its settings for
    # postgres are not in it, whatever the model says postgres reads with it.
    given = _secret_files(tmp_path, [*ALL_SECRETS, *support.BACKUP_SECRETS])
    stack = _render(tmp_path, secret_files=given)
    assert "pgbackrest_db_conf" in model.BY_NAME["postgres"].secrets
    assert [m["source"] for m in stack["services"]["postgres"]["secrets"]] == ["postgres_password"]
    assert not set(stack["secrets"]) & support.BACKUP_SECRETS
    assert not set(stack["services"]) & set(model.BACKUPS) and "backup" not in stack["networks"]
    assert stack["services"]["postgres"]["command"] == ["postgres", "-c", "unix_socket_directories=/tmp"]


def test_postgres_keeps_the_password_version_it_made_its_cluster_with_and_the_rest_take_the_new_one(
    tmp_path: Path,
) -> None:
    """A rotation of postgres_password (ALTER ROLE, then a redeploy) must not restart the database, which read the
    password only at initdb: postgres keeps the running stack's version, under its usual target; migrate and the
    monitor exporter take the new one."""
    files = _secret_files(tmp_path)
    first = _render(tmp_path, secret_files=files)
    deployed = first["secrets"]["postgres_password"]["name"]
    # Nothing rotated: the version postgres runs is the current one, and nothing changes.
    again = _render(tmp_path, secret_files=files, first_start_versions={"postgres_password": deployed})
    assert again == first
    (tmp_path / "rotated").write_text("rotated")  # outside the secrets folder, which each render's settings write
    files["postgres_password"] = tmp_path / "rotated"
    rotated = _render(tmp_path, secret_files=files, first_start_versions={"postgres_password": deployed})
    postgres = rotated["services"]["postgres"]["secrets"]
    assert postgres == [
        {"source": "postgres_password_at_first_start", "uid": "10001", "gid": "10001", "mode": 0o400,
         "target": "postgres_password"},
    ]  # fmt: skip
    assert rotated["secrets"]["postgres_password_at_first_start"] == {"external": True, "name": deployed}
    new = rotated["secrets"]["postgres_password"]["name"]
    assert new != deployed
    assert {m["source"] for m in rotated["services"]["migrate"]["secrets"]} >= {"postgres_password"}
    # Before any deploy (no version running): the current one, as before.
    assert _render(tmp_path, secret_files=files)["services"]["postgres"]["secrets"][0]["source"] == "postgres_password"


def test_a_secret_file_no_service_reads_is_not_declared(tmp_path: Path) -> None:
    files = _secret_files(tmp_path)
    files["redis_admin_password"] = files["redis_acl"].with_name("redis_admin_password")
    files["redis_admin_password"].write_text("admin")
    stack = _render(tmp_path, secret_files=files)
    assert "redis_admin_password" not in stack["secrets"]


def test_secrets_and_the_redis_config_have_versioned_names(tmp_path: Path) -> None:
    stack = _render(tmp_path)
    files = _secret_files(tmp_path)
    for name, declared in stack["secrets"].items():
        path = files.get(name) or tmp_path / "tls" / ("fullchain.pem" if name == "tls_fullchain" else "privkey.pem")
        assert declared == {"file": str(path), "name": render.versioned(support.PROJECT, name, path.read_bytes())}
    conf = COMPOSE_DIR / "redis" / "redis.conf"
    assert stack["configs"] == {
        "redis_conf": {"file": str(conf), "name": render.versioned(support.PROJECT, "redis_conf", conf.read_bytes())}
    }
    assert stack["services"]["redis"]["configs"] == [
        {"source": "redis_conf", "target": "/usr/local/etc/redis/redis.conf", "uid": "10001", "mode": 0o444}
    ]


def test_a_new_secret_value_is_a_new_secret_name(tmp_path: Path) -> None:
    before = _render(tmp_path)["secrets"]
    (tmp_path / "secrets" / "jwt_secret_key").write_text("rotated")
    files = {n: tmp_path / "secrets" / n for n in ALL_SECRETS}
    after = render.render(
        support.merged_config(support.settings(tmp_path)),
        project=support.PROJECT,
        images=REFS,
        secret_files=files,
        tls_dir=tmp_path / "tls",
        redis_conf=COMPOSE_DIR / "redis" / "redis.conf",
        http_port=80,
        https_port=443,
    )["secrets"]
    changed = [n for n in before if before[n]["name"] != after[n]["name"]]
    assert changed == ["jwt_secret_key"]


def test_versioned_names() -> None:
    name = render.versioned("analyticbot", "jwt_secret_key", b"one")
    assert name.startswith("analyticbot_jwt_secret_key_") and len(name.rsplit("_", 1)[1]) == 12
    assert name == render.versioned("analyticbot", "jwt_secret_key", b"one")  # the same content, the same name
    assert name != render.versioned("analyticbot", "jwt_secret_key", b"two")
    assert name != render.versioned("analyticbot-staging", "jwt_secret_key", b"one")


def test_everything_a_service_names_is_declared_and_the_file_is_yaml(stack: dict[str, Any]) -> None:
    # What `docker stack deploy` would refuse: a secret, config, network or volume used but not declared.
    for name, service in stack["services"].items():
        assert {s["source"] for s in service.get("secrets", [])} <= set(stack["secrets"]), name
        assert {c["source"] for c in service.get("configs", [])} <= set(stack["configs"]), name
        assert set(service["networks"]) <= set(stack["networks"]), name
        named = {v.split(":", 1)[0] for v in service.get("volumes", []) if isinstance(v, str)}
        assert named <= set(stack["volumes"]), name
    assert yaml.safe_load(yaml.safe_dump(stack, sort_keys=False)) == stack


# --- the monitoring overlay ---------------------------------------------------------------------------------------


@pytest.fixture
def monitored(tmp_path: Path) -> dict[str, Any]:
    merged = support.merged_config(support.settings(tmp_path), monitoring=True)
    secrets = _secret_files(tmp_path, sorted({n for s in model.SERVICES for n in s.secrets}))
    refs = {**REFS, **{v: f"172.29.7.2:5000/{v.lower()}@sha256:{'cd' * 32}" for v in support.MONITORING_SETTINGS}}
    prometheus = tmp_path / "prometheus.swarm.yml"
    prometheus.write_text("scrape_configs: []\n")
    return _render(tmp_path, merged, images=refs, secret_files=secrets, monitoring_files={"prometheus_yml": prometheus})


def test_the_overlays_files_are_configs_of_the_services_that_read_them(
    monitored: dict[str, Any], tmp_path: Path
) -> None:
    services, configs = monitored["services"], monitored["configs"]
    targets = {c["target"]: c for c in services["prometheus"]["configs"]}
    assert {"/etc/monitoring/prometheus.yml", "/etc/monitoring/rules/analyticbot.yml"} <= set(targets)
    assert all(c["uid"] == str(model.APP_UID) and c["mode"] == 0o444 for c in targets.values())
    # Prometheus's own is the one rendered for Swarm; the others are compose/monitoring's, versioned by content.
    assert configs["prometheus_yml"]["file"] == str(tmp_path / "prometheus.swarm.yml")
    assert configs["alertmanager_yml"]["file"] == str(COMPOSE_DIR / "monitoring" / "alertmanager.yml")
    assert configs["alertmanager_yml"]["name"].startswith(f"{support.PROJECT}_alertmanager_yml_")
    assert [c["target"] for c in services["alertmanager"]["configs"]] == ["/etc/monitoring/alertmanager.yml"]
    # The bind mount of compose/monitoring/ names a host path the nodes do not have: gone.
    assert all("/etc/monitoring" not in str(v) for s in services.values() for v in s.get("volumes", []))


def test_on_swarm_prometheus_and_alertmanager_publish_nothing_and_keep_their_data_node(
    monitored: dict[str, Any],
) -> None:
    """Swarm drops a published port's host address, so a loopback-only port would open on every interface."""
    for name in ("prometheus", "alertmanager"):
        service = monitored["services"][name]
        assert "ports" not in service
        assert service["deploy"]["placement"] == {"constraints": [render.DATA_CONSTRAINT]}
    assert "placement" not in monitored["services"]["redis-exporter"]["deploy"]


def test_on_swarm_stub_status_answers_the_internal_monitoring_network(monitored: dict[str, Any]) -> None:
    services = monitored["services"]
    assert services["proxy"]["networks"] == {
        "backend": {},
        "frontend": {"aliases": ["proxy.localdomain"]},
        "monitoring": {},
    }
    assert services["proxy"]["environment"]["NGINX_EXPORTER_IP"] == render.OVERLAYS["monitoring"]
    assert services["nginx-exporter"]["networks"] == ["monitoring"]
    assert monitored["networks"]["monitoring"]["internal"] is True
    assert monitored["networks"]["monitoring"]["ipam"] == {"config": [{"subnet": "10.123.0.0/24"}]}


def test_without_the_overlay_no_monitoring_network_or_config(stack: dict[str, Any]) -> None:
    assert "monitoring" not in stack["networks"] and set(stack["configs"]) == {"redis_conf"}


# --- the backup overlay -------------------------------------------------------------------------------------------

BACKUP_FILE = yaml.safe_load((COMPOSE_DIR / "docker-compose.backup.yml").read_text())
TLS_TARGET = "/etc/pgbackrest/tls"
CIPHER_TARGET = "/etc/pgbackrest/conf.d/cipher.conf"
DATABASE_SIDE = ("postgres", "backup-agent")
BACKED_SECRETS = sorted({n for s in model.services(monitoring=False, backup=True) for n in s.secrets})


def _compose_binds(service: str, folder: str) -> dict[str, str]:
    """What the backup overlay bind-mounts into a service under `folder` on Compose: each target and its file's
    name."""
    volumes = BACKUP_FILE["services"][service]["volumes"]
    binds = [v.rsplit(":", 2) for v in volumes if v.startswith((".", "$"))]  # source:target:ro
    return {target: Path(source).name for source, target, _ in binds if target.startswith(folder + "/")}


def _render_backed(tmp_path: Path, *, monitoring: bool = False, **settings: str) -> dict[str, Any]:
    merged = support.merged_config({**support.settings(tmp_path), **settings}, monitoring=monitoring, backup=True)
    services = model.services(monitoring=monitoring, backup=True)
    secrets = _secret_files(tmp_path, sorted({n for s in services for n in s.secrets}))
    refs = {**REFS, **{v: f"172.29.7.2:5000/{v.lower()}@sha256:{'cd' * 32}" for v in support.MONITORING_SETTINGS}}
    extra: dict[str, Any] = {}
    if monitoring:
        prometheus = tmp_path / "prometheus.swarm.yml"
        prometheus.write_text("scrape_configs: []\n")
        extra["monitoring_files"] = {"prometheus_yml": prometheus}
    return _render(
        tmp_path, merged, images=refs, secret_files=secrets, backup_tls_dir=support.backup_tls_dir(tmp_path), **extra
    )


@pytest.fixture(params=[False, True], ids=["without-monitoring", "with-monitoring"])
def backed(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """prod's stack with the backup overlay (and the monitoring overlay or not), placeholder secrets and TLS files."""
    return _render_backed(tmp_path, monitoring=request.param)


def test_the_backup_overlays_services_run_the_postgres_image(backed: dict[str, Any]) -> None:
    services = backed["services"]
    monitoring = "prometheus" in services
    assert set(services) == {s.name for s in model.services(monitoring=monitoring, backup=True)} | {render.EDGE_TLS}
    for name in model.BACKUPS:
        assert services[name]["image"] == REFS["POSTGRES_IMAGE"], name
        assert services[name]["entrypoint"] == ["sh", "/etc/pgbackrest/service.sh"], name
    assert services["backup-agent"]["environment"]["ROLE"] == "agent"
    assert services["backup-repo"]["environment"]["ROLE"] == "repo"


def test_postgres_archives_to_pgbackrest_and_keeps_its_second_socket_folder(backed: dict[str, Any]) -> None:
    # Compose's command, merged with the overlay's, the socket moved from /var/run/postgresql to /tmp (see _tmpfs)
    # and the one on the volume backup-agent shares kept.
    assert backed["services"]["postgres"]["command"] == [
        "postgres",
        "-c",
        "unix_socket_directories=/tmp,/var/run/pgbackrest",
        "-c",
        "archive_mode=on",
        "-c",
        "archive_command=pgbackrest --stanza=analyticbot archive-push %p",
        "-c",
        "archive_timeout=5s",
    ]


def test_the_archive_timeout_setting_reaches_the_command(tmp_path: Path) -> None:
    command = _render_backed(tmp_path, ARCHIVE_TIMEOUT="30s")["services"]["postgres"]["command"]
    assert "archive_timeout=30s" in command and command.count("-c") == 4


def test_the_database_side_stays_on_the_data_node_and_the_repository_host_off_it(backed: dict[str, Any]) -> None:
    placement = {name: backed["services"][name]["deploy"].get("placement") for name in (*DATABASE_SIDE, "backup-repo")}
    assert placement == {
        "postgres": {"constraints": [render.DATA_CONSTRAINT]},
        "backup-agent": {"constraints": [render.DATA_CONSTRAINT]},  # postgres' data volume and socket are there
        "backup-repo": {"constraints": [render.OFF_DATA_CONSTRAINT]},  # repository 2 on another machine
    }
    assert render.OFF_DATA_CONSTRAINT == "node.labels.analyticbot.data != true"
    for name in model.BACKUPS:
        deploy = backed["services"][name]["deploy"]
        assert deploy["endpoint_mode"] == "dnsrr" and deploy["replicas"] == 1, name
        assert deploy["restart_policy"] == {"condition": "any", "delay": "1s"}, name
        assert deploy["update_config"]["order"] == "stop-first", name
        assert deploy["resources"]["limits"] == {"cpus": "0.5", "memory": "256M", "pids": 64}, name


def test_each_side_mounts_exactly_its_own_tls_files_0400_for_the_service_user(
    backed: dict[str, Any], tmp_path: Path
) -> None:
    expected = {
        "postgres": ("ca.crt", "backup-agent.crt", "backup-agent.key"),
        "backup-agent": ("ca.crt", "backup-agent.crt", "backup-agent.key"),
        "backup-repo": ("ca.crt", "backup-repo.crt", "backup-repo.key"),
    }
    for name, files in expected.items():
        mounted = [s for s in backed["services"][name]["secrets"] if s.get("target", "").startswith(TLS_TARGET + "/")]
        assert [m["target"] for m in mounted] == [f"{TLS_TARGET}/{file}" for file in files], name
        # Where Compose bind-mounts them (compose/docker-compose.backup.yml), the same files.
        assert {m["target"]: Path(m["target"]).name for m in mounted} == _compose_binds(name, TLS_TARGET), name
        for mount, file in zip(mounted, files, strict=True):
            source = "backup_tls_" + file.replace(".", "_").replace("-", "_")
            assert mount == {"source": source, "target": f"{TLS_TARGET}/{file}", "uid": "10001", "gid": "10001",
                             "mode": 0o400}  # fmt: skip
            declared = backed["secrets"][source]
            path = tmp_path / "backup-tls" / file
            assert declared == {"file": str(path), "name": render.versioned(support.PROJECT, source, path.read_bytes())}
    # Neither side holds the other's key; the CA's key is no service's.
    sources = {name: {s["source"] for s in backed["services"][name]["secrets"]} for name in expected}
    assert "backup_tls_backup_repo_key" not in sources["postgres"] | sources["backup-agent"]
    assert "backup_tls_backup_agent_key" not in sources["backup-repo"]
    assert not any("ca_key" in name for name in backed["secrets"])
    everyone_else = {n for name, s in backed["services"].items() if name not in expected for n in _mounted(s)}
    assert not {n for n in everyone_else if n.startswith("backup_tls_")}


def _mounted(service: dict[str, Any]) -> set[str]:
    return {s["source"] for s in service.get("secrets") or []}


def test_the_cipher_settings_keep_their_place_on_each_side(backed: dict[str, Any], tmp_path: Path) -> None:
    for name in (*DATABASE_SIDE, "backup-repo"):
        own = "pgbackrest_repo_conf" if name == "backup-repo" else "pgbackrest_db_conf"
        other = "pgbackrest_db_conf" if name == "backup-repo" else "pgbackrest_repo_conf"
        secrets = backed["services"][name]["secrets"]
        cipher = [s for s in secrets if s["source"] == own]
        assert cipher == [{"source": own, "uid": "10001", "gid": "10001", "mode": 0o400, "target": CIPHER_TARGET}], name
        assert other not in _mounted(backed["services"][name]), name
    for own in ("pgbackrest_db_conf", "pgbackrest_repo_conf"):
        path = tmp_path / "secrets" / own
        assert backed["secrets"][own] == {
            "file": str(path),
            "name": render.versioned(support.PROJECT, own, path.read_bytes()),
        }
    # The rest of postgres' secrets stay at /run/secrets, as Compose mounts them.
    password = next(s for s in backed["services"]["postgres"]["secrets"] if s["source"] == "postgres_password")
    assert "target" not in password


def test_pgbackrests_settings_and_the_service_script_are_configs(backed: dict[str, Any]) -> None:
    expected = {
        "postgres": {"/etc/pgbackrest/pgbackrest.conf": "pgbackrest_db_settings"},
        "backup-agent": {
            "/etc/pgbackrest/pgbackrest.conf": "pgbackrest_db_settings",
            "/etc/pgbackrest/service.sh": "pgbackrest_service",
        },
        "backup-repo": {
            "/etc/pgbackrest/pgbackrest.conf": "pgbackrest_repo_settings",
            "/etc/pgbackrest/service.sh": "pgbackrest_service",
        },
    }
    files = {
        "pgbackrest_db_settings": "db.conf",
        "pgbackrest_repo_settings": "repo.conf",
        "pgbackrest_service": "service.sh",
    }
    for name, targets in expected.items():
        configs = backed["services"][name]["configs"]
        assert {c["target"]: c["source"] for c in configs} == targets, name
        assert all(c["uid"] == "10001" and c["mode"] == 0o444 for c in configs), name
        # Where Compose bind-mounts compose/pgbackrest/'s files, the same files.
        compose_binds = {t: f for t, f in _compose_binds(name, "/etc/pgbackrest").items() if "/tls/" not in t}
        assert {t: files[source] for t, source in targets.items()} == compose_binds, name
    for config, file in files.items():
        path = COMPOSE_DIR / "pgbackrest" / file
        assert backed["configs"][config] == {
            "file": str(path),
            "name": render.versioned(support.PROJECT, config, path.read_bytes()),
        }


def test_no_bind_mount_survives_and_the_shared_volumes_stay_named(backed: dict[str, Any]) -> None:
    services = backed["services"]
    for name, service in services.items():
        assert not any(str(v).startswith("/") for v in service.get("volumes", [])), name
        assert not any(isinstance(v, dict) and v.get("type") == "bind" for v in service.get("volumes", [])), name
    tmp = {"type": "tmpfs", "target": "/tmp"}
    assert services["postgres"]["volumes"] == [
        "pgdata:/var/lib/postgresql/data:rw",
        "pgbackrest:/var/lib/pgbackrest:rw",
        "pgsocket:/var/run/pgbackrest:rw",
        tmp,
    ]
    assert services["backup-agent"]["volumes"] == [
        "pgdata:/var/lib/postgresql/data:rw",
        "pgbackrest:/var/lib/pgbackrest:rw",
        "pgsocket:/var/run/pgbackrest:rw",
        tmp,
    ]
    # The image's unused VOLUME path under a tmpfs too: no anonymous volume on the repository host.
    unused = {"type": "tmpfs", "target": "/var/lib/postgresql/data"}
    assert services["backup-repo"]["volumes"] == ["pgbackrest-repo:/var/lib/pgbackrest:rw", tmp, unused]
    assert {"pgbackrest", "pgbackrest-repo", "pgsocket"} <= set(backed["volumes"])


def test_the_async_archivers_spool_is_on_the_tmpfs_of_the_database_side(backed: dict[str, Any]) -> None:
    services = backed["services"]
    for name in DATABASE_SIDE:
        spool = services[name]["environment"]["PGBACKREST_SPOOL_PATH"]
        assert spool == "/tmp/pgbackrest-spool", name
        assert {"type": "tmpfs", "target": "/tmp"} in services[name]["volumes"], name
        # The tmpfs owned by uid 10001 that Compose gives the spool cannot be given on Swarm: dropped.
        assert not any("spool" in str(v) for v in services[name]["volumes"]), name
    assert "PGBACKREST_SPOOL_PATH" not in services["backup-repo"]["environment"]  # it archives nothing
    # The rest of the environment is Compose's.
    assert services["postgres"]["environment"]["POSTGRES_USER"] == "analyticbot"
    assert services["backup-agent"]["environment"]["FULL_EVERY"] == "7d"


def test_the_backup_network_is_an_internal_overlay_of_its_own(backed: dict[str, Any]) -> None:
    assert backed["networks"]["backup"] == {
        "driver": "overlay",
        "internal": True,
        "ipam": {"config": [{"subnet": "10.124.0.0/24"}]},
    }
    subnets = [n["ipam"]["config"][0]["subnet"] for n in backed["networks"].values()]
    assert len(subnets) == len(set(subnets))
    services = backed["services"]
    assert services["postgres"]["networks"] == ["backup", "database"]
    assert services["backup-agent"]["networks"] == services["backup-repo"]["networks"] == ["backup"]
    on_backup = {name for name, s in services.items() if "backup" in s["networks"]}
    assert on_backup == {"postgres", "backup-agent", "backup-repo"}


def test_with_the_backup_overlay_everything_a_service_names_is_declared(backed: dict[str, Any]) -> None:
    for name, service in backed["services"].items():
        assert {s["source"] for s in service.get("secrets", [])} <= set(backed["secrets"]), name
        assert {c["source"] for c in service.get("configs", [])} <= set(backed["configs"]), name
        assert set(service["networks"]) <= set(backed["networks"]), name
        named = {v.split(":", 1)[0] for v in service.get("volumes", []) if isinstance(v, str)}
        assert named <= set(backed["volumes"]), name
        for key in ("depends_on", "restart", "security_opt", "pids_limit", "tmpfs"):
            assert key not in service, (name, key)
        # Each secret and config is mounted once at one target.
        targets = [m.get("target", m["source"]) for m in [*service.get("secrets", []), *service.get("configs", [])]]
        assert len(targets) == len(set(targets)), name
    assert yaml.safe_load(yaml.safe_dump(backed, sort_keys=False)) == backed


def test_with_the_backup_overlay_the_input_is_left_as_it_was(tmp_path: Path) -> None:
    merged = support.merged_config(support.settings(tmp_path), backup=True)
    before = copy.deepcopy(merged)
    secrets = _secret_files(tmp_path, BACKED_SECRETS)
    _render(tmp_path, merged, secret_files=secrets, backup_tls_dir=support.backup_tls_dir(tmp_path))
    assert merged == before


def test_a_new_certificate_is_a_new_secret_name(tmp_path: Path) -> None:
    before = _render_backed(tmp_path)["secrets"]
    (tmp_path / "backup-tls" / "backup-repo.crt").write_text("re-issued")
    folder = tmp_path / "backup-tls"
    merged = support.merged_config(support.settings(tmp_path), backup=True)
    secrets = {n: tmp_path / "secrets" / n for n in BACKED_SECRETS}
    after = _render(tmp_path, merged, secret_files=secrets, backup_tls_dir=folder)["secrets"]
    assert [n for n in before if before[n]["name"] != after[n]["name"]] == ["backup_tls_backup_repo_crt"]


def test_the_backup_overlay_without_its_tls_folder_is_refused(tmp_path: Path) -> None:
    merged = support.merged_config(support.settings(tmp_path), backup=True)
    secrets = _secret_files(tmp_path, BACKED_SECRETS)
    with pytest.raises(ValueError, match="backup_tls_dir"):
        _render(tmp_path, merged, secret_files=secrets)


def test_without_the_backup_overlay_a_tls_folder_given_is_ignored(tmp_path: Path) -> None:
    stack = _render(tmp_path, backup_tls_dir=support.backup_tls_dir(tmp_path))
    assert not set(stack["services"]) & set(model.BACKUPS) and "backup" not in stack["networks"]
    assert not [n for n in stack["secrets"] if n.startswith("backup_tls_")]
    assert set(stack["configs"]) == {"redis_conf"}
    assert stack["services"]["postgres"]["command"] == ["postgres", "-c", "unix_socket_directories=/tmp"]
    assert "PGBACKREST_SPOOL_PATH" not in stack["services"]["postgres"]["environment"]
