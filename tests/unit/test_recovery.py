"""The typed view of pgBackRest's info and pg_stat_archiver, restore targets and their window, and
pgBackRest's error lines: from real output of pgBackRest 2.45 (trimmed), no containers."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from analyticbot_ops.errors import BadInput, OpsError
from analyticbot_ops.recovery import catalog, pitr, target

UTC = dt.UTC


def _backup(repo: int, label: str, kind: str, start: int, stop: int, *, error: bool = False) -> dict[str, object]:
    return {
        "archive": {"start": "000000010000000000000003", "stop": "000000010000000000000003"},
        "backrest": {"format": 5, "version": "2.45"},
        "database": {"id": 1, "repo-key": repo},
        "error": error,
        "info": {"delta": 30754313, "repository": {"delta": 3792560, "size": 3792560}, "size": 30754313},
        "label": label,
        "lsn": {"start": "0/3000028", "stop": "0/3000100"},
        "prior": None,
        "reference": None,
        "timestamp": {"start": start, "stop": stop},
        "type": kind,
    }


def _info(backups: list[dict[str, object]], repo2: tuple[int, str] = (0, "ok")) -> str:
    return json.dumps(
        [
            {
                "archive": [
                    {
                        "database": {"id": 1, "repo-key": 1},
                        "id": "15-1",
                        "max": "00000001000000000000000A",
                        "min": "000000010000000000000001",
                    },
                    {
                        "database": {"id": 1, "repo-key": 2},
                        "id": "15-1",
                        "max": "00000001000000000000000A",
                        "min": "000000010000000000000001",
                    },
                ],
                "backup": backups,
                "cipher": "aes-256-cbc",
                "name": "analyticbot",
                "repo": [
                    {"cipher": "aes-256-cbc", "key": 1, "status": {"code": 0, "message": "ok"}},
                    {"cipher": "aes-256-cbc", "key": 2, "status": {"code": repo2[0], "message": repo2[1]}},
                ],
                "status": {"code": 0, "message": "ok"},
            }
        ]
    )


T0 = 1796610225  # 2026-12-07T02:23:45Z


def test_info_gives_each_backup_oldest_first_without_failed_ones() -> None:
    repos, sets = catalog.parse_info(
        _info(
            [
                _backup(1, "B", "diff", T0 + 100, T0 + 104),
                _backup(2, "A", "full", T0, T0 + 4),
                _backup(1, "C", "full", T0 + 200, T0 + 209, error=True),
            ]
        )
    )
    assert [(b.repo, b.label, b.kind) for b in sets] == [(2, "A", "full"), (1, "B", "diff")]
    assert sets[0].stopped == dt.datetime.fromtimestamp(T0 + 4, UTC)
    assert sets[0].stored == 3792560 and sets[0].size == 30754313
    assert [(r.repo, r.ok, r.wal_max) for r in repos] == [(1, True, "00000001000000000000000A")] * 1 + [
        (2, True, "00000001000000000000000A")
    ]


def test_an_unreadable_repository_is_not_ok_and_keeps_pgbackrests_words() -> None:
    repos, _ = catalog.parse_info(_info([], repo2=(99, "[HostConnectError] unable to connect to 'backup-repo:8432'")))
    assert not repos[1].ok and "unable to connect" in repos[1].message
    # No valid backups yet is readable: a restore is refused for the lack of a backup, not of the repository.
    repos, _ = catalog.parse_info(_info([], repo2=(2, "no valid backups")))
    assert repos[1].ok


@pytest.mark.parametrize("text", ["", "{", "[]", '[{"name": "analyticbot", "repo": [{"key": "x"}]}]'])
def test_info_that_is_not_pgbackrests_is_one_error(text: str) -> None:
    with pytest.raises(OpsError):
        catalog.parse_info(text)


def test_the_window_runs_from_the_oldest_backups_end_to_the_last_archived_segment() -> None:
    _, sets = catalog.parse_info(
        _info([_backup(1, "A", "full", T0, T0 + 4), _backup(1, "B", "diff", T0 + 60, T0 + 62)])
    )
    archived = dt.datetime.fromtimestamp(T0 + 300, UTC)
    found = catalog.Catalog((), sets, catalog.Archiver(10, "X", archived, 0, None, None))
    assert found.earliest(1) == dt.datetime.fromtimestamp(T0 + 4, UTC)
    assert found.latest(1) == archived
    assert found.earliest(2) is None and found.latest(2) is None
    assert found.last_backup(1, "full").label == "A"  # type: ignore[union-attr]
    assert found.last_backup(1, "diff").label == "B"  # type: ignore[union-attr]
    # Without PostgreSQL, the newest backup's end is all that is known.
    assert catalog.Catalog((), sets, None).latest(1) == dt.datetime.fromtimestamp(T0 + 62, UTC)


def test_the_archiver_row_and_whether_it_is_failing() -> None:
    row = {
        "archived": 7,
        "last_wal": "W7",
        "last_at": T0 + 10.5,
        "failed": 2,
        "last_failed_wal": "W8",
        "last_failed_at": T0 + 20,
    }
    archiver = catalog.parse_archiver(json.dumps(row))
    assert archiver.failing() and archiver.age(dt.datetime.fromtimestamp(T0 + 20.5, UTC)) == 10.0
    row["last_at"] = T0 + 30
    assert not catalog.parse_archiver(json.dumps(row)).failing()
    never = catalog.parse_archiver(
        json.dumps(
            {
                **row,
                "archived": 0,
                "last_wal": None,
                "last_at": None,
                "failed": 0,
                "last_failed_wal": None,
                "last_failed_at": None,
            }
        )
    )
    assert not never.failing() and never.age(dt.datetime.now(UTC)) is None
    with pytest.raises(OpsError):
        catalog.parse_archiver("not json")


NOW = dt.datetime(2026, 12, 7, 17, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("latest", None),
        (" LATEST ", None),
        ("2026-12-07T16:59:00Z", dt.datetime(2026, 12, 7, 16, 59, tzinfo=UTC)),
        ("2026-12-07 16:59:00", dt.datetime(2026, 12, 7, 16, 59, tzinfo=UTC)),  # no offset: UTC
        ("2026-12-07T17:59:00+01:00", dt.datetime(2026, 12, 7, 16, 59, tzinfo=UTC)),
    ],
)
def test_a_target_is_latest_or_a_moment_in_utc(text: str, expected: dt.datetime | None) -> None:
    assert target.parse_target(text, NOW).moment == expected


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("tomorrow", "--to must be `latest` or a time"),
        ("2026-12-07T17:00:01Z", "is in the future"),
        ("", "--to must be"),
    ],
)
def test_a_target_that_is_not_a_past_moment_is_refused_in_one_line(text: str, said: str) -> None:
    with pytest.raises(BadInput, match=said) as refused:
        target.parse_target(text, NOW)
    assert "\n" not in str(refused.value)


def test_pgbackrest_is_told_a_time_target_in_utc_and_to_promote() -> None:
    moment = target.Target(dt.datetime(2026, 12, 7, 17, 59, 0, 250000, tzinfo=dt.timezone(dt.timedelta(hours=1))))
    assert moment.pgbackrest_args() == [
        "--type=time",
        "--target=2026-12-07 16:59:00.250000+00",
        "--target-action=promote",
    ]
    assert target.Target(None).pgbackrest_args() == ["--type=default"]


def test_the_window_check_refuses_before_the_oldest_backup_and_an_empty_repository() -> None:
    _, sets = catalog.parse_info(_info([_backup(1, "A", "full", T0, T0 + 4)]))
    found = catalog.Catalog((), sets, None)
    with pytest.raises(BadInput, match="before the earliest restore point of repository 1"):
        target.check_window(target.Target(dt.datetime.fromtimestamp(T0, UTC)), found, 1)
    with pytest.raises(BadInput, match="repository 2 holds no backup"):
        target.check_window(target.Target(None), found, 2)
    target.check_window(target.Target(dt.datetime.fromtimestamp(T0 + 5, UTC)), found, 1)


def test_the_repository_is_the_one_asked_for_or_the_first_with_a_backup() -> None:
    repos, sets = catalog.parse_info(_info([_backup(2, "A", "full", T0, T0 + 4)], repo2=(0, "ok")))
    found = catalog.Catalog(repos, sets, None)
    assert pitr.choose_repo(found, None) == 2
    assert pitr.choose_repo(found, 1) == 1
    with pytest.raises(BadInput, match="--repo must be 1"):
        pitr.choose_repo(found, 3)
    down = catalog.Catalog(catalog.parse_info(_info([], repo2=(99, "unable to connect")))[0], (), None)
    with pytest.raises(BadInput, match="repository 2 cannot be read \\(unable to connect\\)"):
        pitr.choose_repo(down, 2)
    with pytest.raises(BadInput, match="no repository answers with a backup"):
        pitr.choose_repo(down, None)


@pytest.mark.parametrize(
    ("output", "line"),
    [
        (
            "2026-12-07 02:23:29.036 P00   WARN: something\n"
            "ERROR: [056]: unable to find primary cluster - cannot proceed\n"
            "       HINT: are all available clusters in recovery?\n",
            "unable to find primary cluster - cannot proceed",
        ),
        (
            "ERROR: [032]: raised from remote-0 tls protocol on 'backup-repo': key '2' is not valid\n",
            "raised from remote-0 tls protocol on 'backup-repo': key '2' is not valid",
        ),
        (
            "2026-12-07 09:12:04.371 P00  ERROR: [029]: unable to read manifest\n"
            "2026-12-07 09:12:04.380 P00   INFO: verify command end: aborted with exception [029]\n",
            "unable to read manifest",
        ),
        ("\nsomething else went wrong\n", "something else went wrong"),
        ("", "no output"),
    ],
)
def test_pgbackrests_error_line_is_what_the_user_reads(output: str, line: str) -> None:
    assert pitr.pgbackrest_error(output) == line


VERIFY_OUTPUT = """\
2026-12-07 03:04:10.125 P00   INFO: verify command begin 2.45: --exec-id=43-098677a6 --repo=1 --stanza=analyticbot
2026-12-07 03:04:30.965 P01   INFO: invalid result 15-1/0000000200000000/00000002000000000000000A-ec2e0c7b.zst: [29] \
raised from local-1 protocol: zst error: [-20] Data corruption detected
                                    [FormatError] on retry after 0ms
2026-12-07 03:04:31.051 P01   INFO: invalid checksum '20261207-022822F/pg_data/base/13572/2654.zst'
2026-12-07 03:04:31.470 P00   INFO: stanza: analyticbot
                                    status: error
                                      backup: 20261207-022822F, status: invalid, total files checked: 1274
2026-12-07 03:04:31.470 P00   INFO: verify command end: completed successfully (15844ms)
"""


def test_verify_names_each_damaged_file_though_pgbackrest_completes_successfully() -> None:
    assert pitr.damaged_files(VERIFY_OUTPUT) == (
        "15-1/0000000200000000/00000002000000000000000A-ec2e0c7b.zst",
        "20261207-022822F/pg_data/base/13572/2654.zst",
    )
    clean = "\n".join(line for line in VERIFY_OUTPUT.splitlines() if " P01 " not in line)
    assert pitr.damaged_files(clean) == ()


def test_a_damaged_repository_is_one_line_naming_at_most_five_files() -> None:
    damaged = pitr.Damaged(2, [f"f{n}" for n in range(7)])
    assert str(damaged) == "repository 2 is damaged: 7 files fail pgBackRest's verify: f0, f1, f2, f3, f4 and 2 more"
    assert damaged.files == tuple(f"f{n}" for n in range(7))


def _stack_with_key(tmp_path: object) -> object:
    from pathlib import Path

    from analyticbot_ops.compose import Stack

    folder = Path(str(tmp_path))
    for name in pitr.CIPHER_SECRETS:
        (folder / name).write_text("x")
    return Stack("prod", "abfull", {"SECRETS_DIR": str(folder), "API_IMAGE": "analyticbot/api:latest"}, backup=True)


def test_a_backup_is_expected_to_store_what_the_last_one_of_its_kind_did() -> None:
    _, sets = catalog.parse_info(_info([_backup(1, "A", "full", T0, T0 + 4), _backup(2, "B", "diff", T0 + 9, T0 + 10)]))
    found = catalog.Catalog((), sets, None)
    assert pitr.needed_bytes(found, 1, "full") == 3792560
    assert pitr.needed_bytes(found, 1, "diff") == 3792560  # no diff there yet: the last full's size
    assert pitr.needed_bytes(found, 2, "full") == 30754313 // 4  # no full there: a quarter of the database
    assert pitr.needed_bytes(catalog.Catalog((), (), None), 1, "full") == 0


def test_a_full_repository_is_one_line_with_the_space_needed_and_free_and_nothing_runs(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = _stack_with_key(tmp_path)
    _, sets = catalog.parse_info(_info([_backup(1, "A", "full", T0, T0 + 4)]))
    monkeypatch.setattr(pitr, "catalog", lambda _s: catalog.Catalog((), sets, None))
    monkeypatch.setattr(pitr, "free_bytes", lambda _s, _r: 1_000_000)
    ran: list[object] = []
    monkeypatch.setattr(pitr, "_pgbackrest", lambda *a, **k: ran.append(a) or "")
    with pytest.raises(OpsError) as refused:
        pitr.backup(stack, "full", (1,))  # type: ignore[arg-type]
    assert str(refused.value) == (
        "no space for a full backup in repository 1 (/var/lib/pgbackrest of backup-agent, volume abfull_pgbackrest): "
        "it needs about 3.8 MB, 1.0 MB is free; nothing was written"
    )
    assert ran == []


def test_a_disk_that_fills_during_the_backup_is_the_same_line(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = _stack_with_key(tmp_path)
    monkeypatch.setattr(pitr, "catalog", lambda _s: catalog.Catalog((), (), None))
    monkeypatch.setattr(pitr, "free_bytes", lambda _s, _r: 0 if ran else None)
    ran: list[object] = []

    def full(*args: object, **_k: object) -> str:
        ran.append(args)
        raise OpsError(
            "pgBackRest (backup in backup-repo): unable to write '/var/lib/pgbackrest/x': [28] No space left on device"
        )

    monkeypatch.setattr(pitr, "_pgbackrest", full)
    with pytest.raises(
        OpsError, match=r"^no space for a diff backup in repository 2 .*0\.0 MB is free; the partial backup"
    ):
        pitr.backup(stack, "diff", (2,))  # type: ignore[arg-type]


def test_the_free_space_is_read_in_a_container_without_network_and_only_for_a_volume_here(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    from analyticbot_ops import docker

    stack = _stack_with_key(tmp_path)
    calls: list[list[str]] = []
    monkeypatch.setattr(docker, "inspect", lambda kind, name: {"Name": name} if name == "abfull_pgbackrest" else None)

    def run(args: list[str], **_k: object) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, "123456\n", "")

    monkeypatch.setattr(docker, "docker", run)
    assert pitr.free_bytes(stack, 1) == 123456  # type: ignore[arg-type]
    assert pitr.free_bytes(stack, 2) is None  # type: ignore[arg-type]
    assert (
        len(calls) == 1
        and "--network" in calls[0]
        and "none" in calls[0]
        and "abfull_pgbackrest:/repository:ro" in calls[0]
    )
