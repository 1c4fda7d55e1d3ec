"""The strict dotenv reader (envfile.py) that secrets.from-env and every stack's settings share: each way a file can
be unreadable is one BadInput line naming the file, never its text."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyticbot_ops import envfile
from analyticbot_ops.errors import BadInput


def test_values_are_read_with_quotes_and_comments_as_dotenv_has_them(tmp_path: Path) -> None:
    path = tmp_path / ".env.dev"
    path.write_text('# a comment\nHTTP_PORT=8080\nDOMAIN="example.org"\n\nEMPTY=\n')
    assert envfile.read(path) == {"HTTP_PORT": "8080", "DOMAIN": "example.org", "EMPTY": ""}


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda p: None, "env file {path} not found"),
        (lambda p: p.write_bytes(b"TOKEN=\xff\xfe\n"), "env file {path} is not UTF-8 text"),
        (lambda p: p.mkdir(), "cannot read env file {path}: Is a directory"),
    ],
    ids=["missing", "not-utf8", "a-folder"],
)
def test_a_file_that_cannot_be_read_is_one_line_naming_it(tmp_path: Path, make: object, said: str) -> None:
    path = tmp_path / ".env.prod"
    make(path)  # type: ignore[operator]
    with pytest.raises(BadInput) as refused:
        envfile.read(path)
    assert str(refused.value) == said.format(path=path)


def test_a_malformed_line_is_named_by_its_number_and_never_shown(tmp_path: Path) -> None:
    path = tmp_path / ".env.dev"
    path.write_text("A=1\n\n\nsecret value with spaces\n")
    with pytest.raises(BadInput) as refused:
        envfile.read(path)
    assert str(refused.value) == f"{path}:4: malformed line (expected NAME=value)"
    assert "secret" not in str(refused.value)
