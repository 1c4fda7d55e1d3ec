"""The restore drill (recovery/drill.py) without containers: psql's row counts as read, the throwaway
project's name refused before anything is touched, and when the copy matches the source."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from analyticbot_ops import backups
from analyticbot_ops.compose import Stack
from analyticbot_ops.errors import BadInput, OpsError
from analyticbot_ops.model import Labels
from analyticbot_ops.recovery import drill
from analyticbot_ops.recovery.target import Target

SOURCE = Stack("prod", "analyticbot", {}, backup=True)


def psql(said: str, asked: list[tuple[list[str], bytes]] | None = None) -> Any:
    def run(command: list[str], stdin: bytes) -> bytes:
        if asked is not None:
            asked.append((command, stdin))
        return said.encode()

    return run


# --- table_counts --------------------------------------------------------------------------------------


def test_table_counts_reads_one_name_and_count_a_line() -> None:
    asked: list[tuple[list[str], bytes]] = []
    counts = drill.table_counts(psql("alembic_version=1\nbot_users=1204\n channels=0 \n\n", asked))
    assert counts == {"alembic_version": 1, "bot_users": 1204, "channels": 0}
    ((command, stdin),) = asked
    assert command == ["psql", "-U", backups.DB_USER, "-d", backups.DB_NAME, "-tA"]
    assert stdin == drill.COUNTS_SQL.encode()
    assert "table_schema = 'public'" in drill.COUNTS_SQL and "count(*)" in drill.COUNTS_SQL


def test_a_table_name_with_an_equals_sign_keeps_it_and_an_empty_schema_counts_none() -> None:
    assert drill.table_counts(psql("a=b=3\n")) == {"a=b": 3}
    assert drill.table_counts(psql("")) == {}
    # A line with no name (psql's own noise) is not a table.
    assert drill.table_counts(psql("=5\nusers=2\n")) == {"users": 2}


@pytest.mark.parametrize("said", ["users=\n", "users=many\n", "users=-1\n", "users=1.5\n"])
def test_a_count_that_is_not_a_number_is_one_line_not_a_traceback(said: str) -> None:
    with pytest.raises(OpsError, match="psql's row count of users is not a number"):
        drill.table_counts(psql(said))


# --- the throwaway project -----------------------------------------------------------------------------


@pytest.fixture
def docker_has(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the daemon holds: containers by label, and volumes and containers by name. Records the asks."""
    held: dict[str, Any] = {"labels": {}, "volume": set(), "container": set(), "asked": []}

    def containers_by_label(label: str) -> list[dict[str, Any]]:
        held["asked"].append(("label", label))
        return held["labels"].get(label, [])

    def inspect(kind: str, name: str) -> dict[str, Any] | None:
        held["asked"].append((kind, name))
        return {"Name": name} if name in held[kind] else None

    monkeypatch.setattr(drill.docker, "containers_by_label", containers_by_label)
    monkeypatch.setattr(drill.docker, "inspect", inspect)
    return held


def test_a_new_project_passes_after_its_label_volume_and_container_are_looked_up(docker_has: dict[str, Any]) -> None:
    drill._check_project(SOURCE, "analyticbot-drill")
    assert docker_has["asked"] == [
        ("label", f"{Labels.PROJECT}=analyticbot-drill"),
        ("volume", "analyticbot-drill_pgdata"),
        ("container", "analyticbot-drill_postgres_1"),
    ]


def test_the_source_itself_is_refused_before_the_daemon_is_asked(docker_has: dict[str, Any]) -> None:
    with pytest.raises(BadInput, match="--into must name a throwaway project, not the source analyticbot"):
        drill._check_project(SOURCE, "analyticbot")
    assert docker_has["asked"] == []


@pytest.mark.parametrize("name", ["", "-drill", "_drill", "Drill", "a b", "a/b", "drill.1", "dríll", "x;rm"])
def test_a_name_compose_would_not_take_is_refused(docker_has: dict[str, Any], name: str) -> None:
    with pytest.raises(BadInput, match="--into must be a project name of lower-case letters, digits, - and _"):
        drill._check_project(SOURCE, name)
    assert docker_has["asked"] == []


@pytest.mark.parametrize(
    "held",
    [
        {"labels": {f"{Labels.PROJECT}=analyticbot-dev": [{"Name": "/analyticbot-dev-api-1"}]}},
        {"volume": {"analyticbot-dev_pgdata"}},  # the stack is down, its data is not
        {"container": {"analyticbot-dev_postgres_1"}},  # someone's container, no label: the drill would remove it
    ],
    ids=["containers", "volume", "container name"],
)
def test_a_project_that_already_exists_is_refused(docker_has: dict[str, Any], held: dict[str, Any]) -> None:
    docker_has.update(held)
    with pytest.raises(BadInput, match=r"project analyticbot-dev already exists: remove it .*nothing was touched"):
        drill._check_project(SOURCE, "analyticbot-dev")


def test_the_drill_refuses_a_bad_project_before_reading_the_repositories(
    monkeypatch: pytest.MonkeyPatch, docker_has: dict[str, Any]
) -> None:
    monkeypatch.setattr(drill.pitr, "catalog", lambda stack: pytest.fail("the repositories were read"))
    monkeypatch.setattr(drill.docker, "docker", lambda *a, **k: pytest.fail("docker ran"))
    with pytest.raises(BadInput, match="not the source"):
        drill.drill(SOURCE, Target(None), "analyticbot")


# --- Drill.matches -------------------------------------------------------------------------------------


def result(counts: dict[str, tuple[int | None, int | None]]) -> drill.Drill:
    return drill.Drill("analyticbot-drill", 1, Target(dt.datetime(2026, 12, 6, tzinfo=dt.UTC)), 41.5, counts, None)


def test_the_copy_matches_when_every_table_has_the_sources_rows() -> None:
    assert result({"bot_users": (1204, 1204), "channels": (0, 0)}).matches
    assert result({}).matches  # an empty database restored as empty


@pytest.mark.parametrize(
    "counts",
    [
        {"bot_users": (1204, 1203), "channels": (0, 0)},
        {"bot_users": (1204, None)},  # not in the copy
        {"bot_users": (None, 3)},  # only in the copy
    ],
)
def test_a_table_with_other_rows_or_missing_on_one_side_does_not_match(
    counts: dict[str, tuple[int | None, int | None]],
) -> None:
    assert not result(counts).matches
