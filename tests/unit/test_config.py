"""The toolkit's settings (invoke.yaml's `ops`): every default valid, every mistake one line."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from analyticbot_ops import config
from analyticbot_ops.errors import BadInput


def _with(**changes: object) -> dict:
    section = copy.deepcopy(config.DEFAULTS["ops"])
    section.update(changes)
    return section


def test_the_defaults_are_valid() -> None:
    config.validate(config.DEFAULTS["ops"])
    config.validate(_with(namespace="registry.example.org/team/analyticbot"))
    config.validate(_with(backup=False, monitoring=False))


def test_the_backup_overlay_is_on_unless_ops_backup_is_false() -> None:
    assert config.DEFAULTS["ops"]["backup"] is True
    assert config.ops({"ops": _with()}).backup is True
    assert config.ops({"ops": _with(backup=False)}).backup is False


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"nmespace": "x"}, "unknown ops setting 'nmespace'"),
        ({"namespace": "Bad Namespace!"}, "is not an image repository path"),
        ({"namespace": "UPPER"}, "is not an image repository path"),
        ({"base_source": "mirror"}, "base_source must be debian or official"),
        ({"backup_keep": 0}, "backup_keep must be a whole number of at least 1"),
        ({"release_keep": "five"}, "release_keep must be a whole number of at least 1"),
        ({"budgets_mb": {"api": -1}}, "budgets_mb must map image names to sizes"),
        ({"audit_exceptions": {"check": "5.8"}}, "audit_exceptions must be a list"),
        ({"monitoring": "yes"}, r"^invoke\.yaml: ops\.monitoring must be true or false, got 'yes'$"),
        # A YAML `backup: off` is a bool already; a quoted one, a number or nothing is not.
        ({"backup": "false"}, r"^invoke\.yaml: ops\.backup must be true or false, got 'false'$"),
        ({"backup": 0}, r"^invoke\.yaml: ops\.backup must be true or false, got 0$"),
        ({"backup": None}, r"^invoke\.yaml: ops\.backup must be true or false, got None$"),
    ],
)
def test_a_mistake_is_named(changes: dict, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        config.validate(_with(**changes))


def test_an_unparsable_project_file_stops_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "invoke.yaml").write_text("ops: [unclosed\n")
    with pytest.raises(SystemExit) as stopped:
        config.check_project_file(tmp_path)
    assert stopped.value.code == 2
    assert capsys.readouterr().err.startswith("error: invoke.yaml is not valid YAML (line 2)")
    (tmp_path / "invoke.yaml").write_text("ops:\n  namespace: fine\n")
    config.check_project_file(tmp_path)
