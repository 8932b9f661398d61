"""The guides match the code: snippets marked ``runnable`` run as written, and every bobosync
command line shown in any guide parses with the real argument parser."""

from __future__ import annotations

import os
import re
import shlex
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bobosync.cli import build_parser
from bobosync.demo import write_demo_env, write_demo_files
from bobosync.simulator import AtHocSimulator, make_users

REPO = Path(__file__).resolve().parent.parent
GUIDES = ["README.md", "process.md", "windows_scheduler_setup.md", "deploy/README.md", ".env_safe"]
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Snippet:
    guide: str
    line: int
    language: str
    runnable: bool
    code: str

    def __str__(self) -> str:
        return f"{self.guide}:{self.line} ({self.language})"


def snippets() -> list[Snippet]:
    found = []
    for guide in GUIDES:
        path = REPO / guide
        if not path.exists() or path.suffix != ".md":
            continue
        text = path.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            words = match.group(1).split()
            found.append(
                Snippet(
                    guide,
                    text.count("\n", 0, match.start()) + 1,
                    words[0] if words else "",
                    "runnable" in words,
                    match.group(2),
                )
            )
    return found


RUNNABLE = [s for s in snippets() if s.runnable]


def test_the_guides_mark_snippets_runnable() -> None:
    languages = {s.language for s in RUNNABLE}
    assert {"bash", "sql", "python"} <= languages, languages
    assert {s.guide for s in RUNNABLE} >= {"README.md", "process.md"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A configured installation with a finished pass behind it, against the simulator."""
    folder = tmp_path_factory.mktemp("docs")
    (folder / "crown_files").mkdir()
    with AtHocSimulator(users=make_users(80)) as sim:
        write_demo_env(folder, sim.url)
        from datetime import datetime

        write_demo_files(folder / "crown_files", datetime.now().replace(microsecond=0))
        first = run_shell(folder, "python -m bobosync")
        assert first.returncode in (0, 1), first.stderr
        yield folder


def shell_env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env["BOBO_ENV_FILE"] = str(folder / ".env")
    env["PYTHONPATH"] = str(REPO)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def run_shell(folder: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-e", "-c", code], cwd=folder, env=shell_env(folder), capture_output=True, text=True, timeout=120
    )


@pytest.mark.skipif(os.name == "nt", reason="bash snippets")
@pytest.mark.parametrize("snippet", RUNNABLE, ids=str)
def test_runnable_snippet_runs_as_written(snippet: Snippet, workdir: Path) -> None:
    if snippet.language in ("bash", "sh"):
        result = run_shell(workdir, snippet.code)
        assert result.returncode == 0, f"{snippet}: {result.stderr[-2000:]}"
    elif snippet.language == "python":
        result = subprocess.run(
            [sys.executable, "-c", snippet.code],
            cwd=workdir,
            env=shell_env(workdir),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{snippet}: {result.stderr[-2000:]}"
    elif snippet.language == "sql":
        with sqlite3.connect(f"file:{workdir / 'bobo_mapping.db'}?mode=ro", uri=True) as conn:
            conn.executescript("PRAGMA query_only = ON;")
            for statement in filter(str.strip, snippet.code.split(";")):
                conn.execute(statement).fetchall()
    else:
        pytest.fail(f"{snippet}: no runner for language {snippet.language!r}")


COMMAND = re.compile(r"^(?:bobosync|\S*python3?(?:\.exe)? (?:-m bobosync|\S*bobo_processor\.py))(?=\s|$)(.*)")


def command_lines() -> Iterator[tuple[Snippet, list[str]]]:
    """Every command line starting ``bobosync`` or ``python -m bobosync`` in the README's and
    process.md's shell blocks (tests/test_ops_scripts.py checks the Windows and Linux guides)."""
    for snippet in snippets():
        if snippet.language not in ("bash", "sh") or snippet.guide not in ("README.md", "process.md"):
            continue
        for raw in snippet.code.splitlines():
            line = raw.split(" #")[0].strip()
            match = COMMAND.match(line)
            if not match:
                continue
            rest = match.group(1).strip().strip("'\"")
            try:
                words = shlex.split(rest, posix=True)
            except ValueError:
                continue
            yield snippet, [w for w in words if not w.startswith("$")]


def test_every_command_shown_in_the_guides_exists() -> None:
    parser = build_parser()
    checked = 0
    for snippet, argv in command_lines():
        if any(w in ("|", ">", ">>", "2>&1") for w in argv):
            argv = argv[: min(argv.index(w) for w in argv if w in ("|", ">", ">>", "2>&1"))]
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            if exc.code not in (0, None):
                pytest.fail(f"{snippet}: `bobosync {' '.join(argv)}` does not parse")
        checked += 1
    assert checked >= 4
