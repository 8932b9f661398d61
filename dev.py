#!/usr/bin/env python3
"""Set-up and run in one command, on a fresh machine (standard library only).

    python3 dev.py demo    # create .venv, install bobosync, run a pass against the built-in AtHoc simulator
    python3 dev.py test    # create .venv, install bobosync with its test tools, run ruff, mypy and pytest

Extra arguments after ``test`` go to pytest (e.g. ``python3 dev.py test -k client``).
On Windows use ``py dev.py ...``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".bobosync-installed"


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_venv() -> Path:
    """Create .venv and (re)install the project whenever pyproject.toml changed."""
    if not venv_python().exists():
        print(f"creating virtual environment {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not STAMP.exists() or STAMP.read_text().strip() != wanted:
        python = str(venv_python())
        print("installing bobosync and its dependencies into .venv", flush=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[dev]"], check=True)
        STAMP.write_text(wanted)
    return venv_python()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test"):
        print(__doc__)
        return 2
    python = str(ensure_venv())
    if argv[0] == "demo":
        return subprocess.call([python, "-m", "bobosync", "demo", *argv[1:]], cwd=ROOT)
    linted = [name for name in ("bobosync", "tests", "bench") if (ROOT / name).is_dir()]
    for step in (["ruff", "check", *linted], ["mypy"]):
        print("$ " + " ".join(step), flush=True)
        code = subprocess.call([python, "-m", *step], cwd=ROOT)
        if code:
            return code
    print("$ pytest", flush=True)
    return subprocess.call([python, "-m", "pytest", *argv[1:]], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
