"""The old flat task names (cli/legacy.py): how TaskTree resolves them, the command each stands for, the
signature of the hidden task (presets gone, defaults changed), and the hooks install() puts into Invoke:
parse errors as one `error:` line with exit 2, and `invoke` keeping our tree when it loads tasks.py."""

from __future__ import annotations

import inspect
import types
from pathlib import Path
from typing import Any

import pytest
from invoke import Collection, Config, Context, Exit, Program, task
from invoke.exceptions import ParseError

import tasks
from analyticbot_ops.cli import health as health_cli
from analyticbot_ops.cli import legacy
from analyticbot_ops.cli import stack as stack_cli
from analyticbot_ops.cli.legacy import Legacy, TaskTree
from analyticbot_ops.config import DEFAULTS
from tests.unit.cli_support import isolated_tasks


@pytest.fixture(autouse=True)
def no_docker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    # install() changes Invoke's classes: whatever a test does, they are as they were afterwards.
    monkeypatch.setattr(Program, "parse_tasks", Program.parse_tasks)
    monkeypatch.setattr(Collection, "from_module", Collection.__dict__["from_module"])
    with isolated_tasks(monkeypatch, tmp_path):
        yield


@pytest.fixture(autouse=True)
def keep_help(monkeypatch: pytest.MonkeyPatch) -> None:
    """Invoke's Task.get_arguments pops each option's help out of `task.help` (asked twice, an option has none):
    let the tests here ask, and every shared task keep its help for the tests that read it later."""
    shared = [t for c in (tasks.ns, *tasks.ns.collections.values()) for t in c.tasks.values()]
    for shared_task in [*shared, *tasks.ns.legacy.values()]:
        monkeypatch.setattr(shared_task, "help", dict(shared_task.help))


def tree(*modules: Any) -> TaskTree:
    """A fresh tree of some task modules, configured as tasks.py configures the real one."""
    built = TaskTree(*(m.ns for m in modules), legacy={k: v for m in modules for k, v in m.LEGACY.items()})
    built.configure(DEFAULTS)
    return built


def names(task_object: Any) -> dict[str, Any]:
    """A task's options as Invoke parses them: name -> default."""
    return {argument.name: argument.default for argument in task_object.get_arguments()}


def recording(task_object: Any, seen: list[tuple[str, dict[str, Any]]]) -> Any:
    """A stand-in body with the task's own signature (Invoke builds the options from it), recording each call."""

    def body(c: Any, *args: Any, **kwargs: Any) -> None:
        seen.append((task_object.name, kwargs))

    body.__signature__ = inspect.signature(task_object.body)  # type: ignore[attr-defined]
    return body


# --- Legacy.command ---------------------------------------------------------------------------------------


def test_command_of_a_plain_rename() -> None:
    assert Legacy("health.endpoints").command() == "invoke health.endpoints"


def test_command_with_presets_flags_values_and_lists() -> None:
    legacy_entry = Legacy("stack.deploy", {"env": "prod", "allow_downtime": True, "service": ["api", "bot"]})
    assert legacy_entry.command() == "invoke stack.deploy --env prod --allow-downtime --service api --service bot"


def test_command_names_the_defaults_it_changes() -> None:
    assert Legacy("stack.deploy", defaults={"env": "staging"}).command() == (
        "invoke stack.deploy (--env staging by default)"
    )
    both = Legacy("stack.up", {"allow_downtime": True}, {"env": "prod", "timeout": 60})
    assert both.command() == "invoke stack.up --allow-downtime (--env prod, --timeout 60 by default)"


def test_the_real_old_names_stand_for_these_commands() -> None:
    commands = tasks.ns.legacy_commands
    assert commands["health-check-verbose"] == "invoke health.check --verbose"
    assert commands["health-check-services"] == (
        "invoke health.check " + " ".join(f"--service {s}" for s in health_cli.model.APPS)
    )
    assert commands["deploy-dev"] == "invoke stack.deploy --env dev --build"
    assert commands["deploy-with-secrets"] == "invoke stack.deploy (--env staging by default)"
    assert commands["ssl-renew"] == "invoke tls.renew"
    # A Task entry: its docstring names the command.
    assert commands["service-logs"] == "invoke stack.logs --service SERVICE"
    assert commands["audit"] == "invoke audit.run"


# --- TaskTree ---------------------------------------------------------------------------------------------


def test_an_old_name_resolves_by_item_and_by_task_with_config() -> None:
    verbose = tasks.ns["health-check-verbose"]
    assert verbose is tasks.ns.legacy["health-check-verbose"]
    assert verbose.name == "health-check-verbose" and verbose.body.__name__ == "health_check_verbose"
    assert verbose.__doc__ == "Old name of `invoke health.check --verbose`."
    found, config = tasks.ns.task_with_config("health-check-verbose")
    assert found is verbose and config["ops"]["namespace"] == DEFAULTS["ops"]["namespace"]
    # The namespaced names resolve as Invoke resolves them.
    assert tasks.ns["health.check"] is health_cli.check
    assert tasks.ns.task_with_config("stack.ps")[0] is stack_cli.ps


def test_old_names_are_parsed_but_not_listed() -> None:
    assert tasks.ns.task_names["secrets-check"] == []
    assert "secrets-check" not in tasks.ns.tasks  # --list shows the namespaces only
    assert "secrets.check" in tasks.ns.task_names


def test_an_old_name_that_is_a_namespace_runs_its_default_task() -> None:
    assert "audit" not in tasks.ns.legacy and "audit" in tasks.ns.collections
    assert tasks.ns.legacy_task("audit") is tasks.ns["audit"] is tasks.ns["audit.run"]


def test_an_unknown_name_is_not_found() -> None:
    with pytest.raises(KeyError):
        tasks.ns["health-check-everything"]


def test_a_task_entry_without_a_command_in_its_docstring_is_named_as_itself() -> None:
    @task
    def cleanup(c: Any) -> None:
        """Remove what the old release left behind."""

    built = TaskTree(health_cli.ns, legacy={"cleanup": cleanup})
    assert built.legacy_commands == {"cleanup": "cleanup"} and built["cleanup"] is cleanup


def test_a_legacy_entry_for_a_missing_task_fails_when_the_tree_is_built() -> None:
    with pytest.raises(KeyError):
        TaskTree(health_cli.ns, legacy={"health-deep": Legacy("health.deep")})


# --- legacy_task ------------------------------------------------------------------------------------------


def test_presets_are_not_options_of_the_old_name() -> None:
    old = tasks.ns["health-check-api"]
    assert old.iterable == [] and set(old.help) == {"env", "json", "verbose"}
    assert "service" not in inspect.signature(old.body).parameters
    assert names(old) == {"env": "dev", "json": False, "verbose": False}
    assert names(tasks.ns["deploy-dev"]).keys() == {"timeout", "allow_downtime", "timings"}


def test_a_changed_default_is_the_old_name_s_default() -> None:
    old = tasks.ns["deploy-with-secrets"]
    assert names(old)["env"] == "staging" and names(stack_cli.deploy)["env"] == "dev"
    assert names(old)["timeout"] == "180"  # numbers still arrive as text, for the task decorator to check


def test_the_old_name_runs_the_new_task_with_its_presets_winning(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(stack_cli.deploy, "body", lambda c, **kw: seen.append(kw))
    built = tree(stack_cli)
    built.legacy_task("deploy-prod").body(None, timeout=30)
    built.legacy_task("deploy-dev").body(None, env="prod")  # a preset cannot be overridden
    assert seen == [{"timeout": 30, "env": "prod"}, {"env": "dev", "build": True}]


def test_a_positional_argument_is_kept_and_a_preset_one_dropped() -> None:
    @task(positional=["name", "env"], iterable=["tag"], help={"name": "Who.", "env": "Where.", "tag": "Tags."})
    def greet(c: Any, name: str, env: str = "dev", tag: list[str] | None = None) -> None:
        """Say hello."""

    made = legacy.legacy_task("greet-prod", Legacy("t.greet", {"env": "prod"}), greet)
    assert made.positional == ["name"] and made.iterable == ["tag"] and set(made.help) == {"name", "tag"}
    assert list(inspect.signature(made.body).parameters) == ["c", "name", "tag"]


# --- through Invoke's own program -------------------------------------------------------------------------


def run_program(built: TaskTree, *argv: str) -> None:
    Program(namespace=built, version="test").run(["invoke", *argv])


def test_invoke_parses_an_old_name_with_its_options_and_changed_default(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(health_cli.check, "body", recording(health_cli.check, seen))
    monkeypatch.setattr(stack_cli.deploy, "body", recording(stack_cli.deploy, seen))
    legacy.install()
    built = tree(health_cli, stack_cli)
    run_program(built, "health-check-verbose", "--env", "prod", "--json")
    run_program(built, "deploy-with-secrets", "--timeout", "60")
    assert seen[0] == ("check", {"env": "prod", "json": True, "verbose": True, "service": []})
    assert seen[1][0] == "deploy"
    assert seen[1][1] == {"env": "staging", "build": False, "timeout": "60", "allow_downtime": False, "timings": False}


def test_invoke_s_parse_errors_are_one_error_line_and_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    legacy.install()
    built = tree(health_cli)
    for argv in (["health-check-api", "--service", "bot"], ["health.check", "--bogus"], ["no-such-task"]):
        with pytest.raises(SystemExit) as caught:
            run_program(built, *argv)
        assert caught.value.code == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err


def test_the_parse_hook_turns_a_parse_error_into_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(program: Program) -> None:
        raise ParseError("No idea what '--bogus' is!")

    monkeypatch.setattr(legacy, "_original_parse_tasks", refuse)
    with pytest.raises(Exit) as caught:
        legacy._parse_tasks(Program())
    assert caught.value.code == 2 and caught.value.message == "error: No idea what '--bogus' is!"


def test_the_parse_hook_passes_a_good_parse_and_other_errors_through(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[Program] = []
    monkeypatch.setattr(legacy, "_original_parse_tasks", parsed.append)
    program = Program()
    legacy._parse_tasks(program)
    assert parsed == [program]

    def broken(program: Program) -> None:
        raise RuntimeError("not a parse error")

    monkeypatch.setattr(legacy, "_original_parse_tasks", broken)
    with pytest.raises(RuntimeError):
        legacy._parse_tasks(program)


def test_install_hooks_program_and_collection() -> None:
    legacy.install()
    assert Program.parse_tasks is legacy._parse_tasks
    assert Collection.from_module.__func__ is legacy._from_module


# --- loading tasks.py --------------------------------------------------------------------------------------


def test_from_module_keeps_our_tree_and_where_it_was_loaded_from() -> None:
    built = tree(health_cli)
    module = types.SimpleNamespace(__name__="tasks", __doc__="Tasks.", ns=built)
    loaded = legacy._from_module(Collection, module, loaded_from="/srv/checkout", config={"ops": {"backup_keep": 3}})
    assert loaded is built and loaded.loaded_from == "/srv/checkout"
    assert loaded.configuration()["ops"]["backup_keep"] == 3
    assert loaded.configuration()["ops"]["namespace"] == DEFAULTS["ops"]["namespace"]  # merged, not replaced
    assert "health-check-verbose" in loaded.task_names


def test_from_module_without_config_leaves_the_configuration_alone() -> None:
    built = tree(health_cli)
    before = built.configuration()
    loaded = legacy._from_module(Collection, types.SimpleNamespace(__name__="tasks", ns=built))
    assert loaded is built and loaded.loaded_from is None and loaded.configuration() == before


def test_from_module_of_a_plain_collection_is_invoke_s_copy() -> None:
    module = types.SimpleNamespace(__name__="tasks", __doc__="Tasks.", ns=health_cli.ns)
    loaded = legacy._from_module(Collection, module, loaded_from="/srv/checkout")
    assert type(loaded) is Collection and loaded is not health_cli.ns
    assert loaded.loaded_from == "/srv/checkout" and set(loaded.task_names) == set(health_cli.ns.task_names)


def test_invoke_loading_the_real_tasks_module_keeps_the_old_names() -> None:
    legacy.install()
    loaded = Collection.from_module(tasks, loaded_from=str(Path(tasks.__file__).parent))
    assert loaded is tasks.ns and "deploy-prod" in loaded.task_names
    assert loaded.loaded_from == str(Path(tasks.__file__).parent)


def test_an_old_name_runs_under_a_real_context(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    monkeypatch.setattr(health_cli.health, "call_endpoints", lambda project: seen.append(project) or [])
    with pytest.raises(Exit) as caught:
        tasks.ns["test-health-endpoints"](Context(Config(overrides=DEFAULTS)), env="staging")
    assert caught.value.code == 5 and seen == ["analyticbot-staging"]
