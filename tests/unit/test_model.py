"""The stack model against the files that cannot import it: the compose files, the Dockerfiles' user and the
services' own placeholder rule. A change on one side without the other fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml
from analyticbot_common import placeholders

from analyticbot_ops import compose, model, secrets, stack_settings
from analyticbot_ops.paths import COMPOSE_DIR, REPO_ROOT


def _services(name: str) -> dict[str, dict]:
    return yaml.safe_load((COMPOSE_DIR / name).read_text())["services"]


# The files that mount secrets: the secrets overlay (the base services), and each overlay (its own services; the
# backup overlay also gives postgres the pgBackRest settings).
SECRET_FILES = ("docker-compose.secrets.yml", compose.MONITORING_FILE, compose.BACKUP_FILE)


def _merged_base() -> dict[str, dict]:
    """The base files and the monitoring and backup overlays: every service any stack runs."""
    merged: dict[str, dict] = {}
    for name in (*compose.BASE_FILES, compose.MONITORING_FILE, compose.BACKUP_FILE):
        for service, body in _services(name).items():
            merged.setdefault(service, {}).update(body)
    return merged


def _declared(name: str) -> set[str]:
    return set(yaml.safe_load((COMPOSE_DIR / name).read_text()).get("secrets") or {})


def test_every_service_of_the_compose_files_is_in_the_model_and_back() -> None:
    assert set(_merged_base()) == {s.name for s in model.SERVICES}
    base = {s for name in compose.BASE_FILES for s in _services(name)}
    # The monitoring overlay holds the monitoring services, and nothing else does.
    assert set(_services(compose.MONITORING_FILE)) == set(model.MONITORS)
    assert not set(model.MONITORS) & base
    # The backup overlay holds the backup services and extends postgres (WAL archiving); nothing else holds them.
    assert set(_services(compose.BACKUP_FILE)) == {"postgres", *model.BACKUPS}
    assert not set(model.BACKUPS) & base and not set(model.BACKUPS) & set(model.MONITORS)


def test_the_compose_files_mount_exactly_what_the_model_says_each_service_reads() -> None:
    """The base services' secrets come from the secrets overlay, the overlays' services' from their overlay, and
    postgres' pgBackRest settings from the backup overlay."""
    for service in model.SERVICES:
        mounted = [
            s if isinstance(s, str) else s["source"]
            for name in SECRET_FILES
            for s in _services(name).get(service.name, {}).get("secrets", [])
        ]
        assert sorted(mounted) == sorted(service.secrets), service.name


def test_every_secret_a_compose_file_mounts_is_declared_once() -> None:
    """In the secrets overlay, but the backup overlay's own (a stack without it declares none of them)."""
    shared, backup = _declared("docker-compose.secrets.yml"), _declared(compose.BACKUP_FILE)
    assert shared | backup == {name for s in model.SERVICES for name in s.secrets}
    assert not shared & backup
    assert not _declared(compose.MONITORING_FILE)
    # What only the backup overlay mounts is what it declares.
    backup_mounts = {
        s if isinstance(s, str) else s["source"]
        for body in _services(compose.BACKUP_FILE).values()
        for s in body.get("secrets", [])
    }
    assert backup == backup_mounts == {"pgbackrest_db_conf", "pgbackrest_repo_conf"}


def test_every_secret_a_service_reads_is_in_the_registry_and_has_its_readers_as_consumers() -> None:
    for service in model.SERVICES:
        for name in service.secrets:
            assert service.name in secrets.get_spec(name).consumers, (service.name, name)


def test_each_compose_image_comes_from_the_model_variable_and_is_required() -> None:
    for service, body in _merged_base().items():
        variable = model.BY_NAME[service].image_variable
        # ${API_IMAGE:?...}: the toolkit always sets it, so a default written here would be a second source.
        assert re.fullmatch(rf"\$\{{{variable}:\?[^}}]+\}}", body["image"]), (service, body["image"])


def test_each_compose_user_is_the_model_uid() -> None:
    for service, body in _merged_base().items():
        if "user" in body:
            assert body["user"] == f"{model.BY_NAME[service].uid}:{model.BY_NAME[service].uid}", service
        for entry in body.get("tmpfs") or []:  # a tmpfs given to the service's user
            for owner in re.findall(r"\b[ug]id=(\d+)", str(entry)):
                assert int(owner) == model.BY_NAME[service].uid, (service, entry)


def test_the_dockerfiles_and_the_base_hooks_use_the_model_uid() -> None:
    """A Dockerfile cannot import the model: its USER and chown owners are held to it here. The base images'
    hooks take the uid from baseimages.py (APP_UID) and write none of their own."""
    for dockerfile in (REPO_ROOT / "services" / "Dockerfile", REPO_ROOT / "nginx" / "Dockerfile"):
        text = dockerfile.read_text()
        owners = re.findall(r"^USER (\d+):(\d+)", text, re.M) + re.findall(r"chown (?:-R )?(\d+):(\d+)", text)
        # Root only where a build stage says so (services/Dockerfile reads every file it copies as root).
        assert owners and set(owners) - {("0", "0")} == {(str(model.APP_UID), str(model.APP_UID))}, dockerfile
    for hook in (REPO_ROOT / "analyticbot_ops" / "baseimages_hooks").glob("*.sh"):
        assert str(model.APP_UID) not in hook.read_text(), hook


# Facts the model names, and the literal each would be if written again elsewhere in the toolkit.
_ONE_HOME_NUMBERS = {
    model.APP_UID: "model.APP_UID",
    model.APP_PORT: "model.APP_PORT",
    model.PROXY_HTTP_PORT: "model.PROXY_HTTP_PORT",
    model.PROXY_HTTPS_PORT: "model.PROXY_HTTPS_PORT",
}
_ONE_HOME_STRINGS = {
    **{role: "model.POSTGRES_ROLES" for role in model.POSTGRES_ROLES.values() if role != model.DATABASE_OWNER},
}


def _literals(path: Path) -> list[tuple[int, object]]:
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and id(node) not in docstrings:
            found.append((node.lineno, node.value))
        if isinstance(node, ast.Tuple) and all(isinstance(e, ast.Constant) for e in node.elts):
            values = tuple(e.value for e in node.elts)  # type: ignore[attr-defined]  # checked just above
            if values == model.DATABASE_CLIENTS:
                found.append((node.lineno, values))
    return found


def test_each_fact_the_model_names_is_written_nowhere_else_in_the_toolkit() -> None:
    """The uid, the app and proxy ports, the database roles and clients: the model's, read from there."""
    package = REPO_ROOT / "analyticbot_ops"
    again = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "model.py" and path.parent == package:
            continue
        for line, value in _literals(path):
            if isinstance(value, int) and not isinstance(value, bool) and value in _ONE_HOME_NUMBERS:
                again.append(f"{path.relative_to(REPO_ROOT)}:{line}: {value} is {_ONE_HOME_NUMBERS[value]}")
            if isinstance(value, str) and value in _ONE_HOME_STRINGS:
                again.append(f"{path.relative_to(REPO_ROOT)}:{line}: {value!r} is in {_ONE_HOME_STRINGS[value]}")
            if value == model.DATABASE_CLIENTS:
                again.append(f"{path.relative_to(REPO_ROOT)}:{line}: {value} is model.DATABASE_CLIENTS")
    assert again == []


@pytest.mark.parametrize(
    ("source", "caught"),
    [("UID = 10001\n", "10001"), ("PORT = 8000\n", "8000"), ('ROLE = "analyticbot_api"\n', "analyticbot_api"),
     ('CLIENTS = ("api", "mtproto")\n', "('api', 'mtproto')")],
)  # fmt: skip
def test_a_second_definition_is_caught(tmp_path: Path, source: str, caught: str) -> None:
    module = tmp_path / "copy.py"
    module.write_text('"""A module that writes a fact again: 10001 in its docstring is not one."""\n' + source)
    values = [str(value) for _line, value in _literals(module)]
    assert caught in values and "A module that writes a fact again: 10001 in its docstring is not one." not in values


def test_the_compose_files_give_no_default_to_what_the_toolkit_always_sets() -> None:
    """A setting the toolkit always sets (compose.py's defaults for every environment, or derived) is required in
    the compose files (`${VAR:?...}`): a default written there too would be a second source, and could differ."""
    always = set(stack_settings.COMMON_DEFAULTS) | set.intersection(*(set(d) for d in stack_settings.DEFAULTS.values()))
    always |= {"PROXY_FRONTEND_IP"}
    seen = set()
    for path in sorted(COMPOSE_DIR.glob("*.yml")):
        for name, operator in re.findall(r"\$\{([A-Z_]+)(:?[-?])?", path.read_text()):
            if name in always:
                seen.add(name)
                assert operator == ":?", f"{path.name}: ${{{name}}} has a default of its own"
    assert {"FRONTEND_SUBNET", "PROXY_BIND", "SECRETS_DIR", "ARCHIVE_TIMEOUT"} <= seen


def test_image_defaults_follow_the_namespace_and_the_settings_say_where_they_came_from() -> None:
    settings = stack_settings.settings_with_sources("dev", namespace="acme/ab")
    assert settings["API_IMAGE"] == ("acme/ab/api:latest", stack_settings.NAMESPACE_SOURCE)
    assert settings["POSTGRES_IMAGE"] == ("acme/ab/postgres:bookworm", stack_settings.NAMESPACE_SOURCE)
    assert stack_settings.settings_with_sources("dev", {"API_IMAGE": "mine:1"})["API_IMAGE"] == ("mine:1", "override")


def test_derived_sets() -> None:
    core = ("postgres", "redis", "api", "bot", "mtproto", "proxy")
    monitors = (
        "prometheus",
        "alertmanager",
        "postgres-exporter",
        "redis-exporter",
        "nginx-exporter",
        "blackbox-exporter",
    )
    backups = ("backup-agent", "backup-repo")
    assert (*core, *backups, *monitors) == model.RUNNING
    assert monitors == model.MONITORS
    assert backups == model.BACKUPS
    assert [s.name for s in model.services(monitoring=False, backup=False) if s.kind != "job"] == list(core)
    assert [s.name for s in model.services(monitoring=False) if s.kind != "job"] == [*core, *backups]
    assert [s.name for s in model.services(monitoring=True, backup=False) if s.kind != "job"] == [*core, *monitors]
    # The backup services run the postgres image (pgBackRest is in it); they build nothing of their own.
    assert {model.BY_NAME[name].image_variable for name in backups} == {"POSTGRES_IMAGE"}
    assert model.BY_NAME["postgres-exporter"].image_variable == "POSTGRES_EXPORTER_IMAGE"
    assert model.JOBS == ("migrate",)
    assert model.ROLLING == ("api", "bot")
    assert model.BUILT == ("api", "bot", "mtproto", "proxy")
    assert model.readers("postgres_password") == ("postgres", "migrate")
    assert model.readers("pgbackrest_db_conf") == ("postgres", "backup-agent")
    assert model.readers("pgbackrest_repo_conf") == ("backup-repo",)


# Values the services refuse at start outside development (their rule's every branch), in the shapes
# an operator would paste.
SERVICE_REFUSED = [
    "change_me",
    "CHANGEME",
    "Example-Strong-Passw0rd-2024",
    "my-Secret-Q7",
    "placeholder-Q7",
    "todo",
    "TBD1",
    "fixme",
    "dummy",
    "xxxxx",
    "***",
    "<your token>",
    "...",
]


@pytest.mark.parametrize("value", SERVICE_REFUSED)
def test_the_toolkit_refuses_every_value_the_services_refuse(value: str) -> None:
    assert placeholders.is_placeholder(value)
    assert secrets.is_placeholder(value)


def test_the_toolkit_reads_the_services_placeholder_file_itself() -> None:
    # One rule: the toolkit's function is the services' module's, not a copy.
    assert Path(secrets.is_placeholder.__code__.co_filename).samefile(Path(placeholders.__file__))
