"""The restore drill (recovery/drill.py) without containers: psql's row counts as read, the throwaway
project's name refused before anything is touched, when the copy matches the source, the copy's container
(hardened, repository 1 read-only, pgBackRest's files where the stack's agent has them), and the drill's
commands on a fake Docker host (recovery_support): the WAL switch and the wait for its archive, the restore
with archiving off, the timed promotion, the comparison, and the copy removed whatever happened unless kept."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from analyticbot_ops import backups, runner
from analyticbot_ops.compose import Stack
from analyticbot_ops.errors import BadInput, OpsError
from analyticbot_ops.model import Labels
from analyticbot_ops.paths import COMPOSE_DIR
from analyticbot_ops.recovery import catalog, drill
from analyticbot_ops.recovery.target import Target
from tests.unit.recovery_support import PSQL, Host, by_sql, fake_host
from tests.unit.test_recovery import T0, _backup, _info

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


# --- the copy's container ------------------------------------------------------------------------------

DRILL = "analyticbot-drill"
COPY = f"{DRILL}_postgres_1"
SECRETS = Path("/srv/analyticbot/secrets")
FROM = Stack(
    "prod", "analyticbot", {"SECRETS_DIR": str(SECRETS), "POSTGRES_IMAGE": "ns/postgres:bookworm"}, backup=True
)


def test_the_copy_runs_hardened_labelled_on_the_sources_backup_network_with_repository_1_read_only() -> None:
    tls = SECRETS / "backup-tls"
    assert drill._container_args(FROM, DRILL) == [
        *("--user", "10001:10001", "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true"),
        *("--tmpfs", "/tmp", "--tmpfs", "/var/run/postgresql:uid=10001,gid=10001,mode=0700"),
        *("--tmpfs", "/var/spool/pgbackrest:uid=10001,gid=10001,mode=0700"),
        *("--label", f"{Labels.PROJECT}={DRILL}", "--label", f"{Labels.SERVICE}=postgres"),
        *("--network", "analyticbot_backup"),
        *("-v", f"{DRILL}_pgdata:/var/lib/postgresql/data"),
        *("-v", "analyticbot_pgbackrest:/var/lib/pgbackrest:ro"),
        *("-v", f"{COMPOSE_DIR / 'pgbackrest' / 'db.conf'}:/etc/pgbackrest/pgbackrest.conf:ro"),
        *("-v", f"{SECRETS / 'pgbackrest_db_conf'}:/etc/pgbackrest/conf.d/cipher.conf:ro"),
        *("-v", f"{tls / 'ca.crt'}:/etc/pgbackrest/tls/ca.crt:ro"),
        *("-v", f"{tls / 'backup-agent.crt'}:/etc/pgbackrest/tls/backup-agent.crt:ro"),
        *("-v", f"{tls / 'backup-agent.key'}:/etc/pgbackrest/tls/backup-agent.key:ro"),
        "ns/postgres:bookworm",
    ]


def test_the_copy_mounts_each_pgbackrest_file_the_stacks_agent_mounts_from_the_same_source() -> None:
    """Read from compose/docker-compose.backup.yml: a file the agent gains there must reach the copy too."""
    overlay = yaml.safe_load((COMPOSE_DIR / "docker-compose.backup.yml").read_text())
    agent = overlay["services"]["backup-agent"]

    def resolved(text: str) -> str:
        return text.replace("${SECRETS_DIR:?set by the toolkit}", str(SECRETS)).replace("./", f"{COMPOSE_DIR}/", 1)

    wanted = [
        resolved(volume)
        for volume in agent["volumes"]
        if ":/etc/pgbackrest/" in volume and not volume.endswith("/service.sh:ro")  # the agent's own scheduler
    ]
    for secret in agent["secrets"]:
        source = resolved(overlay["secrets"][secret["source"]]["file"])
        wanted.append(f"{source}:{secret['target']}:ro")
    mounts = drill._mounts(FROM, DRILL)
    assert mounts[::2] == ["-v"] * len(mounts[1::2])
    assert len(wanted) == 5 and set(wanted) <= set(mounts[1::2])
    assert (COMPOSE_DIR / "pgbackrest" / "db.conf").is_file()


# --- the drill, start to end ---------------------------------------------------------------------------

SOURCE_PSQL = f"docker exec -i analyticbot-postgres-1 {PSQL}"
COPY_PSQL = f"docker exec -i {COPY} {PSQL}"
SEGMENT = "000000010000000000000005"


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> Iterator[Host]:
    """The source's postgres running with two tables; its repositories hold one full backup (repository 1); the
    copy, once started, is promoted at once and holds the same rows."""
    _, sets = catalog.parse_info(_info([_backup(1, "20261207-022345F", "full", T0, T0 + 4)]))
    repos = (catalog.Repository(1, True, "ok", None, None), catalog.Repository(2, True, "ok", None, None))
    monkeypatch.setattr(drill.pitr, "catalog", lambda stack: catalog.Catalog(repos, sets, None))
    with fake_host(monkeypatch, "analyticbot") as made:
        made.states["postgres"] = "running"
        made.fake.answers[("docker", "exec", "-i", "analyticbot-postgres-1")] = by_sql(
            {"pg_switch_wal": SEGMENT, "last_archived_wal": ["f", "t"], "query_to_xml": "bot_users=3\nchannels=1"}
        )
        made.fake.answers[("docker", "exec", "-i", COPY)] = by_sql(
            {"pg_is_in_recovery": "f", "query_to_xml": "bot_users=3\nchannels=1"}
        )
        yield made


def restore_takes(host: Host, seconds: float, *, stderr: str = "", returncode: int = 0) -> None:
    """The drill's one-off pgBackRest restore: it takes `seconds` and exits with `returncode`."""

    def restore(call: runner.Call) -> runner.Completed[Any]:
        host.clock.now += seconds
        return runner.Completed(list(call.argv), returncode, "", stderr)

    host.fake.answers[("docker", "run", "--rm", "--entrypoint", "pgbackrest")] = restore


def test_a_drill_to_latest_archives_the_sources_last_writes_restores_compares_and_removes_the_copy(
    host: Host,
) -> None:
    restore_takes(host, 41.5)
    said: list[str] = []
    result = drill.drill(FROM, Target(None), DRILL, timeout=90, progress=said.append)
    assert result == drill.Drill(DRILL, 1, Target(None), 41.5, {"bot_users": (3, 3), "channels": (1, 1)}, None)
    assert result.matches
    args = " ".join(drill._container_args(FROM, DRILL))
    assert host.commands() == [
        SOURCE_PSQL,  # switch to a new WAL segment
        SOURCE_PSQL,  # not archived yet
        SOURCE_PSQL,  # archived
        SOURCE_PSQL,  # the source's row counts
        f"docker volume create --label {Labels.PROJECT}={DRILL} --label com.docker.compose.volume=pgdata "
        f"{DRILL}_pgdata",
        f"docker run --rm --entrypoint pgbackrest {args} --stanza=analyticbot --repo=1 --type=default "
        "--archive-mode=off restore",
        f"docker run -d --name {COPY} {args} postgres",
        COPY_PSQL,  # promoted
        COPY_PSQL,  # the copy's row counts
        f"docker rm -f -v {COPY}",
        f"docker volume rm -f {DRILL}_pgdata",
    ]
    switch, wait, *_ = (c.input for c in host.fake.calls)
    assert switch == b"SELECT pg_walfile_name(pg_switch_wal() - 1);"
    assert wait == f"SELECT substr(last_archived_wal, 1, 24) >= '{SEGMENT}' FROM pg_stat_archiver;".encode()
    assert [c.timeout for c in host.fake.calls if c.argv[1:3] == ("run", "--rm")] == [90]
    assert said == [f"{DRILL}: restoring latest from repository 1"]


def test_a_drill_to_a_moment_kept_for_a_look_switches_no_wal_and_removes_nothing(host: Host) -> None:
    restore_takes(host, 12.0)
    moment = Target(dt.datetime.fromtimestamp(T0 + 300, dt.UTC))
    result = drill.drill(FROM, moment, DRILL, repo=1, keep=True)
    assert result.kept == COPY and result.seconds == 12.0 and result.target == moment
    commands = host.commands()
    assert commands[0] == SOURCE_PSQL and len([c for c in commands if c == SOURCE_PSQL]) == 1  # counts only
    assert host.fake.calls[0].input == drill.COUNTS_SQL.encode()
    restored = next(c for c in commands if c.startswith("docker run --rm"))
    assert restored.endswith(
        "--stanza=analyticbot --repo=1 --type=time --target=2026-12-07 02:28:45.000000+00 --target-action=promote "
        "--archive-mode=off restore"
    )
    assert not [c for c in commands if c.startswith(("docker rm", "docker volume rm"))]


def test_a_copy_with_other_rows_is_reported_table_by_table(host: Host) -> None:
    restore_takes(host, 1.0)
    host.fake.answers[("docker", "exec", "-i", COPY)] = by_sql(
        {"pg_is_in_recovery": "f", "query_to_xml": "bot_users=2\nposts=7"}
    )
    result = drill.drill(FROM, Target(None), DRILL)
    assert result.counts == {"bot_users": (3, 2), "channels": (1, None), "posts": (None, 7)}
    assert not result.matches


def test_a_failed_restore_is_pgbackrests_line_and_the_copy_is_removed_all_the_same(host: Host) -> None:
    restore_takes(host, 3.0, stderr="ERROR: [075]: no backup set found to restore\n", returncode=75)
    with pytest.raises(OpsError) as failure:
        drill.drill(FROM, Target(None), DRILL)
    assert str(failure.value) == "the drill's restore failed: no backup set found to restore"
    commands = host.commands()
    assert not [c for c in commands if c.startswith("docker run -d")]
    assert commands[-2:] == [f"docker rm -f -v {COPY}", f"docker volume rm -f {DRILL}_pgdata"]


def test_a_copy_that_never_leaves_recovery_is_removed_unless_kept(host: Host) -> None:
    restore_takes(host, 1.0)
    host.fake.answers[("docker", "exec", "-i", COPY)] = by_sql({"pg_is_in_recovery": "t"})
    with pytest.raises(OpsError, match=r"^postgres did not finish recovery within 5 s \(still replaying the WAL\)"):
        drill.drill(FROM, Target(None), DRILL, timeout=5)
    assert host.commands()[-2:] == [f"docker rm -f -v {COPY}", f"docker volume rm -f {DRILL}_pgdata"]


def test_a_switched_segment_that_is_not_a_segments_name_stops_the_drill_before_anything_is_made(host: Host) -> None:
    host.fake.answers[("docker", "exec", "-i", "analyticbot-postgres-1")] = by_sql({"pg_switch_wal": "ERROR"})
    with pytest.raises(OpsError) as failure:
        drill.drill(FROM, Target(None), DRILL)
    assert str(failure.value) == "PostgreSQL named the switched WAL segment 'ERROR', which is not a segment's name"
    assert host.commands() == [SOURCE_PSQL]


def test_a_segment_never_archived_stops_the_drill_after_the_wait_before_anything_is_made(host: Host) -> None:
    host.fake.answers[("docker", "exec", "-i", "analyticbot-postgres-1")] = by_sql(
        {"pg_switch_wal": SEGMENT, "last_archived_wal": "f"}
    )
    with pytest.raises(OpsError) as failure:
        drill.drill(FROM, Target(None), DRILL)
    assert str(failure.value) == (
        "the source's last WAL segment was not archived within 180 s, so the copy could not match it: "
        "see the WAL archive in `invoke stack.backups`"
    )
    assert sum(host.clock.slept) == drill.ARCHIVE_WAIT
    assert not [c for c in host.commands() if c != SOURCE_PSQL]


def test_a_source_that_has_archived_nothing_yet_is_waited_for(host: Host) -> None:
    # pg_stat_archiver's last_archived_wal is NULL until the first segment is archived: psql prints nothing.
    host.fake.answers[("docker", "exec", "-i", "analyticbot-postgres-1")] = by_sql(
        {"last_archived_wal": ["", "f", "t"]}
    )
    drill._wait_archived(FROM, SEGMENT, 10)
    assert host.clock.slept == [0.5, 0.5] and host.commands() == [SOURCE_PSQL] * 3


def test_a_drill_refuses_a_moment_before_the_repositorys_window_before_the_source_is_asked(host: Host) -> None:
    with pytest.raises(BadInput, match="before the earliest restore point of repository 1"):
        drill.drill(FROM, Target(dt.datetime.fromtimestamp(T0, dt.UTC)), DRILL)
    assert host.commands() == []


def test_a_drill_into_a_project_that_exists_is_refused_through_the_same_daemon_checks(host: Host) -> None:
    host.held.add(("volume", f"{DRILL}_pgdata"))
    with pytest.raises(BadInput, match=f"project {DRILL} already exists"):
        drill.drill(FROM, Target(None), DRILL)
    assert host.commands() == []
