"""The base-image recipes: apt sources parsing, input hashing, the mmdebstrap command."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyticbot_ops import baseimages
from analyticbot_ops.errors import BadInput, OpsError

DEB822 = """Types: deb
URIs: http://mirror.invalid/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

# a disabled one
Types: deb
URIs: http://other.invalid/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb-src
URIs: http://src.invalid/debian
Suites: bookworm
Components: main
"""


def test_deb822_keeps_enabled_binary_stanzas_only() -> None:
    sources = baseimages.parse_deb822_sources(DEB822)
    assert [s.uri for s in sources] == ["http://mirror.invalid/debian"]
    assert sources[0].suites == ("bookworm", "bookworm-updates")


def test_one_line_sources_strip_options_and_comments() -> None:
    text = "deb [arch=amd64 signed-by=/k.gpg] http://m.invalid/debian/ bookworm main # comment\n# deb http://x y z\n"
    sources = baseimages.parse_one_line_sources(text)
    assert sources == [baseimages.AptSource("http://m.invalid/debian", ("bookworm",), ("main",))]


def test_mirror_lines_keep_this_release_main_suites() -> None:
    sources = [
        baseimages.AptSource("http://a.invalid/debian", ("bookworm", "bookworm-updates", "trixie"), ("main",)),
        baseimages.AptSource("http://b.invalid/debian-security", ("bookworm-security",), ("main",)),
        baseimages.AptSource("http://c.invalid/extra", ("bookworm",), ("contrib",)),
    ]
    assert baseimages.mirror_lines(sources, "bookworm") == [
        "deb http://a.invalid/debian bookworm main",
        "deb http://a.invalid/debian bookworm-updates main",
        "deb http://b.invalid/debian-security bookworm-security main",
    ]


def test_no_matching_sources_is_one_clear_error() -> None:
    with pytest.raises(OpsError, match="no Debian 'bookworm' main suite"):
        baseimages.mirror_lines([], "bookworm")


def test_host_sources_read_both_formats(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("deb http://one.invalid/debian bookworm main\n")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    (tmp_path / "sources.list.d" / "ignored.disabled").write_text("deb http://no.invalid x main\n")
    uris = [s.uri for s in baseimages.host_apt_sources(tmp_path)]
    assert uris == ["http://one.invalid/debian", "http://mirror.invalid/debian"]


def test_codename_from_os_release(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text('NAME="Debian GNU/Linux"\nVERSION_CODENAME=bookworm\n')
    assert baseimages.host_codename(release) == "bookworm"
    release.write_text("NAME=Other\n")
    with pytest.raises(OpsError):
        baseimages.host_codename(release)


def test_inputs_hash_changes_with_mirror_and_packages() -> None:
    base = baseimages.recipe("python-runtime")
    first = baseimages.inputs_hash(base, ["deb http://a.invalid bookworm main"], "bookworm")
    assert first == baseimages.inputs_hash(base, ["deb http://a.invalid bookworm main"], "bookworm")
    assert first != baseimages.inputs_hash(base, ["deb http://b.invalid bookworm main"], "bookworm")
    other = baseimages.BaseRecipe(**{**base.__dict__, "packages": (*base.packages, "tzdata")})
    assert first != baseimages.inputs_hash(other, ["deb http://a.invalid bookworm main"], "bookworm")


def test_mmdebstrap_command_uses_extract_hooks_and_merged_usr() -> None:
    command = baseimages.mmdebstrap_command(
        baseimages.recipe("python-runtime"), "bookworm", ["deb http://m.invalid x main"]
    )
    assert "--variant=extract" in command
    assert f"--hook-dir={baseimages.MERGED_USR_HOOKS}" in command
    # customize hooks never run for the extract variant: every hook must be an extract hook
    assert not [arg for arg in command if arg.startswith("--customize-hook")]
    assert sum(arg.startswith("--extract-hook") for arg in command) == 2
    assert command[-3:] == ["bookworm", "-", "deb http://m.invalid x main"]


def test_unknown_recipe_lists_known_ones() -> None:
    with pytest.raises(BadInput, match="python-runtime"):
        baseimages.recipe("nope")


def test_every_recipe_names_an_official_stand_in_and_existing_hooks() -> None:
    for base in baseimages.RECIPES:
        assert ":" in base.official_image
        for script, *_ in base.hooks:
            assert (baseimages.HOOKS_DIR / script).is_file()


def test_official_source_uses_the_official_image_where_a_registry_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(baseimages.docker, "require_daemon", lambda: "20.10")
    monkeypatch.setattr(baseimages, "use_official", lambda base: True)
    monkeypatch.setattr(baseimages, "build_from_debian", lambda *a, **k: pytest.fail("must not build"))
    results = baseimages.build_base_images(["python-runtime"], source="official")
    assert baseimages.image_refs(results) == {"python-runtime": "python:3.11-slim-bookworm"}
    assert results[0].action == "official"


def test_official_source_falls_back_to_debian_where_no_registry_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(baseimages.docker, "require_daemon", lambda: "20.10")
    monkeypatch.setattr(baseimages, "use_official", lambda base: False)
    monkeypatch.setattr(baseimages, "host_codename", lambda: "bookworm")
    monkeypatch.setattr(
        baseimages,
        "host_apt_sources",
        lambda: [baseimages.AptSource("http://m.invalid/debian", ("bookworm",), ("main",))],
    )
    built = []

    def fake_build(base, namespace, mirrors, codename, force):  # type: ignore[no-untyped-def]
        built.append((base.name, mirrors, codename))
        return baseimages.BaseBuild(base.name, base.tag(namespace), "built")

    monkeypatch.setattr(baseimages, "build_from_debian", fake_build)
    progress: list[str] = []
    results = baseimages.build_base_images(["python-runtime"], source="official", progress=progress.append)
    assert built == [("python-runtime", ["deb http://m.invalid/debian bookworm main"], "bookworm")]
    assert results[0].action == "fallback" and results[0].tag == "analyticbot/python-runtime:bookworm"
    assert any("no registry answered" in line for line in progress)


def test_unknown_source_is_bad_input() -> None:
    with pytest.raises(BadInput, match=r"debian.*official"):
        baseimages.build_base_images(source="registry")
