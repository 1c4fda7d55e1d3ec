"""What `k8s.validate` proves without a cluster (k8s/validate.py): every environment's rendered set passes the
Kubernetes 1.30, 1.33 and 1.37 schemas (strict) and the cross-references; and each kind of mistake planted in
the prod set is found as one-line problems naming the file and the object, and nothing else is."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

import pytest

from analyticbot_ops import model
from analyticbot_ops.k8s import manifests, render
from analyticbot_ops.k8s import validate as checks
from tests.unit import k8s_support

Manifests = dict[str, list[dict[str, Any]]]
NAMESPACE = "analyticbot"


@functools.cache
def _made(env: str) -> tuple[str, ...]:
    """The Secrets `k8s.secrets` makes for an environment."""
    return tuple(s.name for s in manifests.secret_objects(k8s_support.stack(env)))


@functools.cache
def _prod() -> Manifests:
    return k8s_support.render_merged("prod")


def _object(files: Manifests, file: str, kind: str, name: str | None = None) -> dict[str, Any]:
    name = name or file.removesuffix(".yaml")
    return next(d for d in files[file] if d["kind"] == kind and d["metadata"]["name"] == name)


def _container(files: Manifests, file: str, kind: str = "Deployment") -> dict[str, Any]:
    return _object(files, file, kind)["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("env", model.ENVIRONMENTS)
def test_every_environments_set_has_no_problem(env: str) -> None:
    stack = k8s_support.stack(env)
    files = k8s_support.render_merged(env)
    assert checks.problems(files, _made(env), stack.project) == []
    # What the set mounts is what k8s.secrets makes, no more and no less.
    assert render.secrets_used(files) == set(_made(env))


def _planted(change: Callable[[Manifests], None]) -> Manifests:
    files = copy.deepcopy(_prod())
    change(files)
    return files


def _problems(files: Manifests, changed: str) -> list[checks.Problem]:
    """validate.problems of a changed prod set, the schemas asked about the changed file alone (the others are the
    rendered set's, proven valid above): the index, the schemas, the cross-references."""
    return [
        *checks.kustomization_problems(files),
        *checks.schema_problems({changed: files[changed]} if changed in files else {}),
        *checks.reference_problems(files, _made("prod"), NAMESPACE),
    ]


def _one_line_problems_naming(problems: list[checks.Problem], file: str, obj: str, count: int = 1) -> list[str]:
    assert len(problems) == count, [str(p) for p in problems]
    for problem in problems:
        assert (problem.file, problem.object) == (file, obj), str(problem)
        assert "\n" not in str(problem) and str(problem).startswith(f"{file}: {obj}: ")
    return [p.message for p in problems]


def test_an_unknown_field_fails_the_schema_of_each_version() -> None:
    files = _planted(lambda f: _container(f, "api.yaml").__setitem__("imagePullPolice", "Always"))
    messages = _one_line_problems_naming(_problems(files, "api.yaml"), "api.yaml", "Deployment/api", 3)
    for version, message in zip(checks.VERSIONS, messages, strict=True):
        assert message.startswith(f"Kubernetes {version}: spec.template.spec.containers.0: ")
        assert "'imagePullPolice' was unexpected" in message


def test_a_removed_api_version_fails_each_version() -> None:
    def v1beta1(files: Manifests) -> None:
        _object(files, "api.yaml", "PodDisruptionBudget")["apiVersion"] = "policy/v1beta1"

    messages = _one_line_problems_naming(_problems(_planted(v1beta1), "api.yaml"), "api.yaml",
                                         "PodDisruptionBudget/api", 3)  # fmt: skip
    assert messages == [f"Kubernetes {v} has no policy/v1beta1 PodDisruptionBudget" for v in checks.VERSIONS]


def _selector(files: Manifests) -> None:
    _object(files, "api.yaml", "Deployment")["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "apl"


def _service_selects_nothing(files: Manifests) -> None:
    _object(files, "redis.yaml", "Service")["spec"]["selector"]["app.kubernetes.io/name"] = "rediss"


def _target_port(files: Manifests) -> None:
    _object(files, "api.yaml", "Service")["spec"]["ports"][0]["targetPort"] = "web"


def _probe_port(files: Manifests) -> None:
    _container(files, "bot.yaml")["readinessProbe"]["httpGet"]["port"] = "admin"


def _configmap(files: Manifests) -> None:
    files["configmaps.yaml"] = [d for d in files["configmaps.yaml"] if d["metadata"]["name"] != "redis"]


def _secret(files: Manifests) -> None:
    volumes = _object(files, "mtproto.yaml", "Deployment")["spec"]["template"]["spec"]["volumes"]
    next(v for v in volumes if v["name"] == "secrets")["projected"]["sources"][0]["secret"]["name"] = "mtproto-extra"


def _underscore(files: Manifests) -> None:
    _object(files, "proxy.yaml", "Service", "proxy-public")["metadata"]["name"] = "proxy_public"


def _long_label(files: Manifests) -> None:
    _object(files, "api.yaml", "Deployment")["metadata"]["labels"]["team"] = "x" * 64


def _quantity(files: Manifests) -> None:
    _container(files, "api.yaml")["resources"]["limits"]["cpu"] = "1.5 cores"


def _request_above_limit(files: Manifests) -> None:
    _container(files, "api.yaml")["resources"]["requests"]["memory"] = "1Gi"


def _unlisted(files: Manifests) -> None:
    files["kustomization.yaml"][0]["resources"].remove("redis.yaml")


def _listed_but_missing(files: Manifests) -> None:
    del files["blackbox-exporter.yaml"]


@pytest.mark.parametrize(
    ("change", "file", "obj", "message"),
    [
        (_selector, "api.yaml", "Deployment/api", "selector {'app.kubernetes.io/name': 'apl', "
         "'app.kubernetes.io/instance': 'analyticbot'} does not match its pod labels"),
        (_service_selects_nothing, "redis.yaml", "Service/redis", "selector {'app.kubernetes.io/name': 'rediss', "
         "'app.kubernetes.io/instance': 'analyticbot'} selects no pod"),
        (_target_port, "api.yaml", "Service/api", "port http: targetPort 'web' is no port of the pods it selects"),
        (_probe_port, "bot.yaml", "Deployment/bot", "container bot: readinessProbe names port 'admin', which it "
         "does not have"),
        (_configmap, "redis.yaml", "StatefulSet/redis", "volume redis-conf names ConfigMap redis, which is not "
         "rendered"),
        (_secret, "mtproto.yaml", "Deployment/mtproto", "volume secrets names Secret mtproto-extra, which is not "
         "made"),
        (_underscore, "proxy.yaml", "Service/proxy_public", "name 'proxy_public' is not DNS-1123"),
        (_long_label, "api.yaml", "Deployment/api", f"label team: value '{'x' * 64}' is malformed"),
        (_quantity, "api.yaml", "Deployment/api", "container api: limits.cpu '1.5 cores' is not a quantity"),
        (_request_above_limit, "api.yaml", "Deployment/api", "container api: memory request 1Gi above limit 512Mi"),
    ],
    ids=["selector", "service-selects-no-pod", "target-port", "probe-port", "configmap", "secret", "dns-1123",
         "label-value", "quantity", "request-above-limit"],
)  # fmt: skip
def test_a_broken_cross_reference_is_one_problem_naming_its_object(
    change: Callable[[Manifests], None], file: str, obj: str, message: str
) -> None:
    files = _planted(change)
    assert _one_line_problems_naming(_problems(files, file), file, obj) == [message]


@pytest.mark.parametrize("change", [_unlisted, _listed_but_missing], ids=["unlisted", "listed-but-missing"])
def test_a_kustomization_that_does_not_list_the_sets_files_is_one_problem(change: Callable[[Manifests], None]) -> None:
    files = _planted(change)
    (message,) = _one_line_problems_naming(_problems(files, "kustomization.yaml"), "kustomization.yaml",
                                           "Kustomization")  # fmt: skip
    listed, present = files["kustomization.yaml"][0]["resources"], sorted(f for f in files if f != "kustomization.yaml")
    assert message == f"resources {listed} are not the set's files {present}"


def test_a_set_without_a_kustomization_says_it_is_missing() -> None:
    files = _planted(lambda f: f.pop("kustomization.yaml"))
    assert [str(p) for p in checks.kustomization_problems(files)] == ["kustomization.yaml: Kustomization: missing"]


def test_an_object_in_another_namespace_is_a_problem() -> None:
    files = _planted(lambda f: _object(f, "api.yaml", "Service")["metadata"].__setitem__("namespace", "default"))
    assert _one_line_problems_naming(_problems(files, "api.yaml"), "api.yaml", "Service/api") == [
        "namespace 'default', not 'analyticbot'"
    ]
