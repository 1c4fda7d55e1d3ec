"""Dotenv files (.env.ENV, the input of secrets.from-env): read strictly, a malformed line refused with its number,
never its text (it may hold a secret). The callers say what a refusal means for them."""

from __future__ import annotations

import io
import re
from pathlib import Path

from dotenv.parser import Binding, parse_stream

from .errors import BadInput


def _line_of(binding: Binding) -> int:
    """The line a binding starts on: the parser counts from before its leading blank lines."""
    original = binding.original.string
    leading = original[: len(original) - len(original.lstrip())]
    return binding.original.line + len(re.findall(r"\r\n|\n|\r", leading))


def read(env_file: Path) -> dict[str, str]:
    """The variables of a dotenv file. A missing, unreadable or malformed file is one BadInput line."""
    try:
        text = env_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"env file {env_file} not found") from None
    except UnicodeDecodeError:
        raise BadInput(f"env file {env_file} is not UTF-8 text") from None
    except OSError as exc:
        raise BadInput(f"cannot read env file {env_file}: {exc.strerror}") from None
    values: dict[str, str] = {}
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            raise BadInput(f"{env_file}:{_line_of(binding)}: malformed line (expected NAME=value)")
        if binding.key is not None and binding.value is None:
            # python-dotenv reads a bare `NAME` as "no value" and moves on: a typo would vanish silently.
            raise BadInput(f"{env_file}:{_line_of(binding)}: {binding.key} has no '=' (expected NAME=value)")
        if binding.key is not None and binding.value is not None:
            values[binding.key] = binding.value
    return values
