#!/usr/bin/env python3
"""Set-up and run in one command, on a fresh machine (standard library only).

    python3 dev.py demo    # create .venv, install bobosync, run a pass against the built-in AtHoc simulator
    python3 dev.py test    # create .venv, install bobosync with its test tools, run ruff (format, lint), mypy, pytest
    python3 dev.py wheelhouse --dest DIR [--platform win_amd64] [--python 3.11]
                           # every runtime wheel for that platform into DIR, with requirements.txt, for
                           # `pip install --no-index --find-links DIR -r DIR/requirements.txt` offline

Extra arguments after ``test`` go to pytest (e.g. ``python3 dev.py test -k client``).
On Windows use ``py dev.py ...``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
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


#: Target platforms: pip's wheel tags for each, and the platform uv resolves the markers for (pip
#: download evaluates environment markers for this machine, so it would miss keyring's
#: Windows-only pywin32-ctypes).
PLATFORMS = {
    "win_amd64": ("x86_64-pc-windows-msvc", ["win_amd64"]),
    "manylinux_x86_64": (
        "x86_64-manylinux_2_28",
        ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "linux_x86_64"],
    ),
}


def venv_tool(name: str) -> Path:
    return VENV / ("Scripts" if os.name == "nt" else "bin") / (name + (".exe" if os.name == "nt" else ""))


def wheelhouse(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dev.py wheelhouse", description="Download every runtime wheel.")
    parser.add_argument("--dest", type=Path, required=True)
    parser.add_argument("--platform", choices=sorted(PLATFORMS), help="default: this machine")
    parser.add_argument("--python", help="target Python version, e.g. 3.11 (default: this one)")
    args = parser.parse_args(argv)
    python = str(ensure_venv())
    uv = venv_tool("uv")
    if not uv.exists():
        subprocess.run([python, "-m", "pip", "install", "--quiet", "uv"], check=True)
    version = args.python or f"{sys.version_info.major}.{sys.version_info.minor}"
    compile_cmd = [str(uv), "pip", "compile", str(ROOT / "requirements.txt"), "--python-version", version]
    compile_cmd += ["--no-header", "--no-annotate"]
    download = [python, "-m", "pip", "download", "--only-binary=:all:", "--no-deps", "--python-version", version]
    download += ["--implementation", "cp", "--dest", str(args.dest)]
    if args.platform:
        uv_platform, tags = PLATFORMS[args.platform]
        compile_cmd += ["--python-platform", uv_platform]
        for tag in tags:
            download += ["--platform", tag]
    pins = subprocess.run(compile_cmd, check=True, capture_output=True, text=True).stdout
    pinned = [line.strip() for line in pins.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    args.dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ROOT / "requirements.txt", args.dest / "requirements.txt")
    (args.dest / "pinned.txt").write_text("\n".join(pinned) + "\n")
    subprocess.run([*download, *pinned], check=True)  # --no-deps: exactly the pins, resolved for the target
    print(f"{len(pinned)} wheels for {args.platform or 'this machine'}, Python {version}, in {args.dest}")
    return 0


def main(argv: list[str]) -> int:
    if argv and argv[0] == "wheelhouse":
        return wheelhouse(argv[1:])
    if not argv or argv[0] not in ("demo", "test"):
        print(__doc__)
        return 2
    python = str(ensure_venv())
    if argv[0] == "demo":
        return subprocess.call([python, "-m", "bobosync", "demo", *argv[1:]], cwd=ROOT)
    linted = [name for name in ("bobosync", "tests", "bench") if (ROOT / name).is_dir()]
    for step in (["ruff", "format", "--check", *linted], ["ruff", "check", *linted], ["mypy"]):
        print("$ " + " ".join(step), flush=True)
        code = subprocess.call([python, "-m", *step], cwd=ROOT)
        if code:
            return code
    print("$ pytest", flush=True)
    return subprocess.call([python, "-m", "pytest", *argv[1:]], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
