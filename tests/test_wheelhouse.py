"""``python3 dev.py wheelhouse``: the wheels install with ``--no-index`` and are complete for the target.

Needs PyPI; skipped cleanly when it cannot be reached.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from bobosync.depcheck import RUNTIME_PACKAGES

ROOT = Path(__file__).resolve().parent.parent


def _pypi_reachable() -> bool:
    try:
        with urllib.request.urlopen("https://pypi.org/simple/tzdata/", timeout=5):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _pypi_reachable(), reason="PyPI is not reachable from here")


def wheelhouse(dest: Path, *options: str) -> list[Path]:
    subprocess.run(
        [sys.executable, str(ROOT / "dev.py"), "wheelhouse", "--dest", str(dest), *options],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert (dest / "requirements.txt").read_text() == (ROOT / "requirements.txt").read_text()
    return sorted(dest.glob("*.whl"))


def requires(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(name).decode("utf-8"))
    return [Requirement(line) for line in metadata.get_all("Requires-Dist") or []]


def test_a_wheelhouse_for_this_machine_installs_offline_into_a_fresh_venv(tmp_path: Path) -> None:
    wheels = wheelhouse(tmp_path / "wheels")
    assert {canonicalize_name(parse_wheel_filename(w.name)[0]) for w in wheels} >= set(RUNTIME_PACKAGES)
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(target)
    python = str(target / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}  # no extra wheel folders from a pip configuration
    env.pop("PIP_FIND_LINKS", None)
    env.pop("PIP_INDEX_URL", None)
    env.pop("PIP_EXTRA_INDEX_URL", None)
    install = [python, "-m", "pip", "install", "--no-index", "--find-links", str(tmp_path / "wheels")]
    install += ["-r", str(tmp_path / "wheels" / "requirements.txt")]
    done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    modules = ",".join(RUNTIME_PACKAGES.values())
    imported = subprocess.run([python, "-c", f"import {modules}"], capture_output=True, text=True, timeout=120)
    assert imported.returncode == 0, imported.stderr


def test_a_windows_wheelhouse_holds_every_dependency_its_wheels_declare_for_windows(tmp_path: Path) -> None:
    wheels = wheelhouse(tmp_path / "wheels", "--platform", "win_amd64", "--python", "3.11")
    names = {canonicalize_name(parse_wheel_filename(w.name)[0]) for w in wheels}
    assert "pywin32-ctypes" in names, "keyring's Windows-only dependency"
    for wheel in wheels:
        tags = parse_wheel_filename(wheel.name)[3]
        assert all(t.platform in ("any", "win_amd64") for t in tags), wheel.name
    env: dict[str, str] = {
        **{key: str(value) for key, value in default_environment().items()},
        "extra": "",
        "sys_platform": "win32",
        "platform_system": "Windows",
        "os_name": "nt",
        "python_version": "3.11",
        "python_full_version": "3.11.9",
        "platform_machine": "AMD64",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }
    missing = {
        (wheel.name, str(req))
        for wheel in wheels
        for req in requires(wheel)
        if req.marker is None or req.marker.evaluate(env)
        if canonicalize_name(req.name) not in names
    }
    assert missing == set()
