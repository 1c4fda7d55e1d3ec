"""The Kubernetes set (k8s/render.py) rendered from the real compose files merged by Compose: each environment's
set is its golden copy byte for byte and the same on every render; no secret value reaches a file; each Compose
fact becomes what the renderer's docstring says (workload kinds, updates, probes, hardening, tmpfs, secrets,
sysctls, grace periods, limits, the public Service); and a change to the model shows up in Compose, Swarm and
Kubernetes alike."""

from __future__ import annotations

import copy
import dataclasses
import functools
import secrets as random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from analyticbot_ops import model
from analyticbot_ops.errors import BadInput
from analyticbot_ops.k8s import manifests, policy, render
from analyticbot_ops.k8s import validate as checks
from analyticbot_ops.paths import COMPOSE_DIR
from analyticbot_ops.swarm import render as swarm_render
from analyticbot_ops.tls import backup as backup_tls
from analyticbot_ops.tls import layout as tls_layout
from tests.unit import k8s_support, swarm_support

Manifests = dict[str, list[dict[str, Any]]]
STATEFUL = ("postgres", "redis", "backup-repo", "prometheus", "alertmanager")
DEPLOYMENTS = ("api", "bot", "mtproto", "proxy", "postgres-exporter", "redis-exporter", "nginx-exporter",
               "blackbox-exporter")  # fmt: skip
CIPHER = "/etc/pgbackrest/conf.d/cipher.conf"


@functools.cache
def _set(env: str = "prod") -> Manifests:
    """An environment's set, rendered once for the tests that only read it."""
    return k8s_support.render_merged(env)


def _documents(files: Manifests) -> Iterator[dict[str, Any]]:
    for documents in files.values():
        yield from documents


def _object(files: Manifests, kind: str, name: str) -> dict[str, Any]:
    found = [d for d in _documents(files) if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def _workloads(files: Manifests) -> list[dict[str, Any]]:
    return [d for d in _documents(files) if d["kind"] in ("Deployment", "StatefulSet", "Job")]


def _pod(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def _containers(files: Manifests) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Each container of the set with its pod spec."""
    for workload in _workloads(files):
        for container in _pod(workload)["containers"]:
            yield _pod(workload), container


def _container(files: Manifests, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    found = [(pod, c) for pod, c in _containers(files) if c["name"] == name]
    assert len(found) == 1, name
    return found[0]


def _secret_files(pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
    """Each secret key a container sees, with the path of its file (from Secret volumes and projections)."""
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    files: dict[str, str] = {}
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"]) or {}  # none: a claim of the StatefulSet
        sources = [s["secret"] for s in (volume.get("projected") or {}).get("sources") or [] if "secret" in s]
        if "secret" in volume:
            sources.append(volume["secret"])
        for source in sources:
            for item in source["items"]:
                files[item["key"]] = f"{mount['mountPath']}/{item['path']}"
    return files


# --- golden and deterministic ---------------------------------------------------------------------------------


@pytest.mark.parametrize("env", model.ENVIRONMENTS)
def test_each_environments_set_is_its_golden_copy_byte_for_byte(env: str) -> None:
    texts = manifests.texts(k8s_support.rendered(env))
    folder = k8s_support.GOLDEN_DIR / env
    golden = {path.name: path.read_text() for path in sorted(folder.glob("*.yaml"))}
    hint = f"the {env} set is not its golden copy; if the change is meant, run scripts/gen-k8s-golden"
    assert sorted(texts) == sorted(golden), hint
    changed = [name for name in texts if texts[name] != golden[name]]
    assert not changed, f"{hint} (changed: {', '.join(changed)})"
    # The cached path the other tests take renders the same set.
    assert manifests.texts(_set(env)) == texts


def test_rendering_twice_or_from_a_reordered_config_gives_the_same_text() -> None:
    merged = k8s_support.merged("prod")
    first = manifests.texts(k8s_support.render_merged("prod", merged))
    assert manifests.texts(k8s_support.render_merged("prod", merged)) == first
    # Nothing follows the order Compose happens to print: services, networks and lists reversed give the same.
    reordered = copy.deepcopy(merged)
    reordered["services"] = dict(reversed(reordered["services"].items()))
    for service in reordered["services"].values():
        service["networks"] = dict(reversed(service["networks"].items()))
        service["environment"] = dict(reversed((service.get("environment") or {}).items()))
        for key in ("secrets", "volumes", "tmpfs"):
            if service.get(key):
                service[key] = list(reversed(service[key]))
    assert manifests.texts(k8s_support.render_merged("prod", reordered)) == first
    assert merged == k8s_support.merged("prod")  # the input is left as it was


# --- secrets -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", model.ENVIRONMENTS)
def test_no_secret_value_is_in_any_rendered_file_and_no_secret_is_rendered(env: str, tmp_path: Path) -> None:
    secrets_dir, tls_dir = tmp_path / "secrets", tmp_path / "tls"
    values: dict[Path, str] = {}
    names = {name for service in model.SERVICES for name in service.secrets}
    files = [secrets_dir / name for name in names]
    files += [tls_dir / tls_layout.FULLCHAIN, tls_dir / tls_layout.PRIVKEY]
    files += [secrets_dir / backup_tls.FOLDER / f"{who}.{ext}" for who in ("ca", *backup_tls.PEERS) for ext in
              ("crt", "key")]  # fmt: skip
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        values[path] = f"planted-{random.token_hex(16)}"
        path.write_text(values[path])
    stack = k8s_support.stack(env, overrides={"SECRETS_DIR": str(secrets_dir), "TLS_DIR": str(tls_dir)})
    # Every file the Secrets are made of is one planted here.
    made = {path for secret in manifests.secret_objects(stack) for _, path in secret.keys}
    assert made <= set(values) and len(made) == len(names) + 2 + 5  # the CA's key is no Secret's

    rendered = manifests.render_stack(stack, k8s_support.IMAGES)
    for name, text in manifests.texts(rendered).items():
        leaked = [str(path) for path, value in values.items() if value in text]
        assert not leaked, (name, leaked)
    assert not [d["metadata"]["name"] for d in _documents(rendered) if d["kind"] == "Secret"]


# --- workloads ----------------------------------------------------------------------------------------------------


def test_a_service_with_a_volume_of_its_own_is_a_statefulset_with_a_headless_service_and_claims() -> None:
    files = _set()
    for name in STATEFUL:
        statefulset = _object(files, "StatefulSet", name)
        service = _object(files, "Service", name)
        assert service["spec"]["clusterIP"] == "None", name
        assert statefulset["spec"]["serviceName"] == name and statefulset["spec"]["replicas"] == 1, name
        claims = {c["metadata"]["name"]: c for c in statefulset["spec"]["volumeClaimTemplates"]}
        assert claims and all(c["spec"]["accessModes"] == ["ReadWriteOnce"] for c in claims.values()), name
        # Each claim is a named volume the service mounts in Compose, and the container mounts it.
        mounted = {m["name"] for m in _pod(statefulset)["containers"][0]["volumeMounts"]}
        assert set(claims) <= mounted, name
    postgres_claims = _object(files, "StatefulSet", "postgres")["spec"]["volumeClaimTemplates"]
    assert {c["metadata"]["name"]: c["spec"]["resources"]["requests"]["storage"] for c in postgres_claims} == {
        "pgbackrest": render.STORAGE["pgbackrest"],
        "pgdata": render.STORAGE["pgdata"],
    }


def test_the_other_services_are_deployments_and_migrate_is_a_job_named_per_release() -> None:
    files = _set()
    kinds = {d["metadata"]["name"]: d["kind"] for d in _workloads(files)}
    release = render.release_name(k8s_support.IMAGES)
    assert kinds == {
        **dict.fromkeys(STATEFUL, "StatefulSet"),
        **dict.fromkeys(DEPLOYMENTS, "Deployment"),
        f"migrate-{release}": "Job",
    }
    job = _object(files, "Job", f"migrate-{release}")
    assert _pod(job)["restartPolicy"] == "OnFailure"
    assert job["spec"]["template"]["metadata"]["labels"][render.NAME] == "migrate"
    # A new api image is a new release, so a new Job runs the migrations again.
    other = {**k8s_support.IMAGES, "API_IMAGE": "registry.example.org/analyticbot/api@sha256:" + "f" * 64}
    assert render.release_name(other) != release
    assert render.release_name({**k8s_support.IMAGES, "BOT_IMAGE": "x"}) == release


def test_the_backup_agent_is_a_container_in_postgres_pod_with_a_service_of_its_own() -> None:
    files = _set()
    assert "backup-agent.yaml" not in files
    postgres = _object(files, "StatefulSet", "postgres")
    assert [c["name"] for c in _pod(postgres)["containers"]] == ["postgres", "backup-agent"]
    service = _object(files, "Service", "backup-agent")
    assert service["spec"]["selector"] == postgres["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [{"name": "pgbackrest", "port": 8432, "targetPort": "pgbackrest",
                                         "protocol": "TCP"}]  # fmt: skip
    agent = _pod(postgres)["containers"][1]
    assert {"name": "pgbackrest", "containerPort": 8432, "protocol": "TCP"} in agent["ports"]
    # It shares postgres' data volume and socket folder, as in Compose.
    shared = {m["name"] for m in agent["volumeMounts"]} & {
        m["name"] for m in _pod(postgres)["containers"][0]["volumeMounts"]
    }
    assert {"pgdata", "pgbackrest", "pgsocket"} <= shared


def test_rolling_services_roll_with_nothing_unavailable_and_a_budget_and_singletons_recreate() -> None:
    files = _set()
    budgets = {d["metadata"]["name"]: d for d in _documents(files) if d["kind"] == "PodDisruptionBudget"}
    assert set(budgets) == set(model.ROLLING)
    for workload in _workloads(files):
        name = workload["spec"]["template"]["metadata"]["labels"][render.NAME]
        if workload["kind"] == "Deployment" and name in model.ROLLING:
            assert workload["spec"]["strategy"] == {"type": "RollingUpdate",
                                                    "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}  # fmt: skip
            assert workload["spec"]["replicas"] == 2
            assert budgets[name]["spec"] == {"minAvailable": 1, "selector": workload["spec"]["selector"]}
        elif workload["kind"] == "Deployment":
            assert workload["spec"]["strategy"] == {"type": "Recreate"} and workload["spec"]["replicas"] == 1, name
        elif workload["kind"] == "StatefulSet":
            assert workload["spec"]["replicas"] == 1, name


def test_the_apps_probe_over_http_on_their_live_and_ready_pages_never_by_exec() -> None:
    files = _set()
    for name in model.APPS:
        _, container = _container(files, name)
        assert container["startupProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}, name
        assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}, name
        assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}, name
        assert not [p for p in ("startupProbe", "livenessProbe", "readinessProbe") if "exec" in container[p]], name
        assert {"name": "http", "containerPort": 8000, "protocol": "TCP"} in container["ports"], name
    # Every long-running container has the three probes; the job none.
    every = {"startupProbe", "readinessProbe", "livenessProbe"}
    for _, container in _containers(files):
        expected = set() if container["name"] in model.JOBS else every
        assert every & set(container) == expected, container["name"]


def test_every_pod_and_container_is_hardened() -> None:
    files = _set()
    for workload in _workloads(files):
        pod = _pod(workload)
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True, workload["metadata"]["name"]
        assert security["runAsUser"] == security["runAsGroup"] == security["fsGroup"] == 10001
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, container["name"]
            assert context["readOnlyRootFilesystem"] is True, container["name"]
            assert context["capabilities"] == {"drop": ["ALL"]}, container["name"]
        assert policy.restricted_violations(pod) == [], workload["metadata"]["name"]


def test_each_compose_tmpfs_is_an_emptydir_in_memory_at_its_path() -> None:
    merged, files = k8s_support.merged("prod"), _set()
    checked = 0
    for name, service in merged["services"].items():
        pod, container = _container(files, name)
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        for entry in service.get("tmpfs") or []:
            target = entry.split(":", 1)[0]
            volume = volumes[mounts[target]["name"]]
            assert volume["emptyDir"]["medium"] == "Memory", (name, target)
            assert "readOnly" not in mounts[target], (name, target)
            checked += 1
    assert checked >= len(merged["services"]) + 3  # /tmp everywhere, and postgres' socket and spool folders


def test_each_container_mounts_exactly_the_secrets_the_model_says_it_reads() -> None:
    files = _set()
    tls_keys = {"tls.crt", "tls.key", "ca.crt", *(f"{p}.{e}" for p in backup_tls.PEERS for e in ("crt", "key"))}
    seen = set()
    for pod, container in _containers(files):
        name = container["name"]
        mounted = {k: v for k, v in _secret_files(pod, container).items() if k not in tls_keys}
        assert set(mounted) == set(model.BY_NAME[name].secrets), name
        for key, path in mounted.items():
            assert path == (CIPHER if key.startswith("pgbackrest_") else f"/run/secrets/{key}"), (name, key)
        seen.add(name)
    assert seen == {s.name for s in model.SERVICES}
    # Each model secret is the one key of a Secret named like it (DNS-1123: dashes).
    pod, _ = _container(files, "postgres")
    projected = next(v for v in pod["volumes"] if v["name"] == "secrets")["projected"]["sources"]
    item = {"key": "postgres_password", "path": "postgres_password"}
    assert projected == [{"secret": {"name": "postgres-password", "items": [item]}}]
    assert render.secret_name("postgres_collector_password") == "postgres-collector-password"


def test_the_pgbackrest_cipher_settings_are_where_pgbackrest_reads_them_on_each_side() -> None:
    files = _set()
    assert _secret_files(*_container(files, "postgres"))["pgbackrest_db_conf"] == CIPHER
    assert _secret_files(*_container(files, "backup-agent"))["pgbackrest_db_conf"] == CIPHER
    assert _secret_files(*_container(files, "backup-repo"))["pgbackrest_repo_conf"] == CIPHER
    assert "pgbackrest_repo_conf" not in _secret_files(*_container(files, "postgres"))


def test_the_proxys_unsafe_sysctl_is_removed_and_recorded_and_the_safe_one_kept() -> None:
    merged, files = k8s_support.merged("prod"), _set()
    assert set(merged["services"]["proxy"]["sysctls"]) == {"net.ipv4.tcp_tw_reuse", "net.ipv4.ip_local_port_range"}
    proxy = _object(files, "Deployment", "proxy")
    kept = merged["services"]["proxy"]["sysctls"]["net.ipv4.ip_local_port_range"]
    assert _pod(proxy)["securityContext"]["sysctls"] == [{"name": "net.ipv4.ip_local_port_range", "value": kept}]
    annotations = proxy["spec"]["template"]["metadata"]["annotations"]
    reason = annotations[f"{render.EXCEPTION}sysctl.net.ipv4.tcp_tw_reuse"]
    assert "restricted" in reason
    assert f"{render.EXCEPTION}sysctl.net.ipv4.ip_local_port_range" not in annotations
    assert "net.ipv4.tcp_tw_reuse" not in render.SAFE_SYSCTLS
    for workload in _workloads(files):
        for sysctl in _pod(workload)["securityContext"].get("sysctls") or []:
            assert sysctl["name"] in render.SAFE_SYSCTLS


def test_the_grace_period_and_memory_limits_carry_over() -> None:
    merged, files = k8s_support.merged("prod"), _set()
    assert merged["services"]["postgres"]["stop_grace_period"] == "30s"
    assert _pod(_object(files, "StatefulSet", "postgres"))["terminationGracePeriodSeconds"] == 30
    assert "stop_grace_period" not in merged["services"]["api"]
    assert "terminationGracePeriodSeconds" not in _pod(_object(files, "Deployment", "api"))  # Kubernetes' 30 s
    assert merged["services"]["api"]["deploy"]["resources"]["limits"] == {"cpus": 1.5, "memory": "512M"}
    _, api = _container(files, "api")
    assert api["resources"] == {"requests": {"cpu": "375m", "memory": "256Mi"},
                                "limits": {"cpu": "1500m", "memory": "512Mi"}}  # fmt: skip
    _, postgres = _container(files, "postgres")
    assert postgres["resources"]["limits"]["memory"] == "1024Mi"  # 1G


@pytest.mark.parametrize(
    ("compose_value", "quantity"),
    [("512M", "512Mi"), ("536870912", "512Mi"), (536870912, "512Mi"), ("1G", "1024Mi"), ("1073741824", "1024Mi"),
     ("64m", "64Mi"), ("1000000", "1000000")],
)  # fmt: skip
def test_a_compose_memory_size_as_a_kubernetes_quantity(compose_value: object, quantity: str) -> None:
    assert render._quantity_memory(compose_value) == quantity


def test_compose_v2s_byte_sizes_render_the_same_set() -> None:
    merged = k8s_support.merged("prod")
    for service in merged["services"].values():
        limits = service["deploy"]["resources"]["limits"]
        size, unit = int(limits["memory"][:-1]), limits["memory"][-1]
        limits["memory"] = str(size * {"M": 2**20, "G": 2**30}[unit])  # as `docker compose config` prints it
    assert manifests.texts(k8s_support.render_merged("prod", merged)) == manifests.texts(_set())


def test_a_memory_size_that_is_not_one_is_refused() -> None:
    with pytest.raises(BadInput, match="is not a size"):
        render._quantity_memory("lots")
    assert render._quantity_memory("1.5G") == "1536Mi"


@pytest.mark.parametrize("service_type", manifests.SERVICE_TYPES)
def test_the_public_proxy_service_has_the_type_asked_for_and_ports_80_and_443(service_type: str) -> None:
    files = k8s_support.render_merged("prod", proxy_service_type=service_type)
    public = _object(files, "Service", "proxy-public")
    assert public["spec"]["type"] == service_type
    assert [(p["name"], p["port"], p["targetPort"]) for p in public["spec"]["ports"]] == [
        ("http", 80, "http"),
        ("https", 443, "https"),
    ]
    assert public["spec"]["selector"] == _object(files, "Deployment", "proxy")["spec"]["selector"]["matchLabels"]
    # The client's address is kept where the Service is reached from outside.
    assert ("externalTrafficPolicy" in public["spec"]) == (service_type != "ClusterIP")


def test_without_the_monitoring_overlay_there_is_no_prometheus_and_no_monitoring_configmap() -> None:
    stack = k8s_support.stack("prod", monitoring=False)
    assert not stack.monitoring
    files = k8s_support.render_merged("prod", monitoring=False)
    assert not {f"{name}.yaml" for name in model.MONITORS} & set(files)
    assert [d["metadata"]["name"] for d in files["configmaps.yaml"]] == ["pgbackrest", "redis"]
    assert not [d for d in _documents(files) if "monitoring" in str(d.get("metadata", {}).get("name"))]
    # ...and the proxy's stub_status answers nobody (its exporter is not there).
    _, proxy = _container(files, "proxy")
    assert {"name": "NGINX_EXPORTER_IP", "value": ""} in proxy["env"]
    assert {d["metadata"]["name"] for d in _documents(_set()) if d["kind"] == "ConfigMap"} == {
        "monitoring",
        "pgbackrest",
        "redis",
    }


# --- a change to the model --------------------------------------------------------------------------------------

NEW_SECRET = "extra_token"


@pytest.fixture
def mtproto_reads_a_new_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model says the collector also reads `extra_token`. Every module reads the model as `model.SERVICES` and
    `model.BY_NAME` (none imports them by name), so patching the two is the whole change."""
    mtproto = model.BY_NAME["mtproto"]
    changed = dataclasses.replace(mtproto, secrets=(*mtproto.secrets, NEW_SECRET))
    services = tuple(changed if s.name == "mtproto" else s for s in model.SERVICES)
    monkeypatch.setattr(model, "SERVICES", services)
    monkeypatch.setattr(model, "BY_NAME", {s.name: s for s in services})


def _with_new_secret(merged: dict[str, Any], secrets_dir: str) -> dict[str, Any]:
    """What the secrets overlay would give: the secret declared, and mounted by mtproto (long form, sorted)."""
    merged["secrets"] = {**merged.get("secrets", {}), NEW_SECRET: {"file": f"{secrets_dir}/{NEW_SECRET}"}}
    service = merged["services"]["mtproto"]
    service["secrets"] = sorted([*service["secrets"], {"source": NEW_SECRET}], key=lambda s: s["source"])
    return merged


def _compose_readers(merged: dict[str, Any], secret: str) -> list[str]:
    """test_model.py's reading of the compose files: the services whose secrets name `secret`."""
    return sorted(
        name
        for name, service in merged["services"].items()
        for entry in service.get("secrets") or []
        if (entry if isinstance(entry, str) else entry["source"]) == secret
    )


@pytest.mark.usefixtures("mtproto_reads_a_new_secret")
def test_a_new_secret_of_the_model_shows_up_in_compose_swarm_and_kubernetes_alike(tmp_path: Path) -> None:
    """One change, the model's (mtproto reads extra_token) with the compose secrets overlay's to match: test_model.py's
    check holds (the compose mounts are the model's readers); the Kubernetes set mounts it for mtproto alone from a
    Secret `k8s.secrets` makes, and the audit's secrets rule passes; the Swarm stack mounts and declares it for
    mtproto alone. Nothing else needs to change for a new secret to reach all three."""
    # Compose: the mount list of the changed config says what the model says (test_model.py's check).
    merged = _with_new_secret(k8s_support.merged("prod"), "/srv/secrets")
    assert model.readers(NEW_SECRET) == ("mtproto",)
    assert _compose_readers(merged, NEW_SECRET) == list(model.readers(NEW_SECRET))
    mtproto_mounts = sorted(s["source"] for s in merged["services"]["mtproto"]["secrets"])
    assert mtproto_mounts == sorted(model.BY_NAME["mtproto"].secrets)

    # Kubernetes: mtproto, and only mtproto, mounts it from a Secret of its own that k8s.secrets makes.
    files = k8s_support.render_merged("prod", merged)
    pod, _ = _container(files, "mtproto")
    sources = [s["secret"] for v in pod["volumes"] for s in (v.get("projected") or {}).get("sources") or []]
    assert {"name": "extra-token", "items": [{"key": NEW_SECRET, "path": NEW_SECRET}]} in sources
    holders = [c["name"] for p, c in _containers(files) if NEW_SECRET in _secret_files(p, c)]
    assert holders == ["mtproto"]
    assert _secret_files(*_container(files, "mtproto"))[NEW_SECRET] == f"/run/secrets/{NEW_SECRET}"
    context = policy.Context(policy.memberships_of(merged))
    assert [f for f in policy.secret_findings(files, context) if not f.ok] == []
    made = [s.name for s in manifests.secret_objects(k8s_support.stack("prod"))]
    assert "extra-token" in made
    assert not [p for p in checks.reference_problems(files, made, "analyticbot") if "Secret" in p.message]

    # Swarm: the stack file mounts it for mtproto, 0400 for the service user, and declares it.
    swarm_merged = _with_new_secret(swarm_support.merged_config(swarm_support.settings(tmp_path)), str(tmp_path))
    secret_files = {}
    for service in model.services(monitoring=False, backup=False):
        for name in (*swarm_support.swarm_secrets(service), NEW_SECRET):
            secret_files[name] = tmp_path / "secrets" / name
    (tmp_path / "secrets").mkdir()
    (tmp_path / "tls").mkdir()
    for path in [*secret_files.values(), tmp_path / "tls" / "fullchain.pem", tmp_path / "tls" / "privkey.pem"]:
        path.write_text(f"value of {path.name}")
    stack = swarm_render.render(
        swarm_merged,
        project=swarm_support.PROJECT,
        images={v: f"172.29.7.2:5000/ns/{v.lower()}@sha256:{'ab' * 32}" for v in swarm_support.IMAGES},
        secret_files=secret_files,
        tls_dir=tmp_path / "tls",
        redis_conf=COMPOSE_DIR / "redis" / "redis.conf",
        http_port=80,
        https_port=443,
    )
    swarm_holders = sorted(
        name for name, s in stack["services"].items() if NEW_SECRET in {m["source"] for m in s.get("secrets", [])}
    )
    assert swarm_holders == ["mtproto"]
    mount = next(m for m in stack["services"]["mtproto"]["secrets"] if m["source"] == NEW_SECRET)
    assert mount == {"source": NEW_SECRET, "uid": "10001", "gid": "10001", "mode": 0o400}
    assert stack["secrets"][NEW_SECRET]["file"] == str(secret_files[NEW_SECRET])


def test_a_secret_compose_mounts_and_the_model_does_not_name_fails_the_k8s_audit() -> None:
    """The model, not the compose files, is what the Kubernetes set is held to: a mount added on one side only
    is a finding."""
    merged = _with_new_secret(k8s_support.merged("prod"), "/srv/secrets")
    files = k8s_support.render_merged("prod", merged)
    failed = [f for f in policy.secret_findings(files, policy.Context(policy.memberships_of(merged))) if not f.ok]
    assert [(f.target, f.detail) for f in failed] == [("mtproto", f"not its own: {NEW_SECRET}")]
