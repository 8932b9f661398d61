"""Missing third-party packages: named with the install commands, exit 2, never a traceback.

The subprocess tests run the real entry points in a real venv that holds only the original
tool's three packages (requests, python-dotenv, tenacity and what requests pulls in), as an
upgraded site's old ``myenv`` does.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bobosync.depcheck import EXIT_MISSING, RUNTIME_PACKAGES, missing_message, missing_packages

ROOT = Path(__file__).resolve().parent.parent
ORIGINAL_MODULES = ("requests", "dotenv", "tenacity", "urllib3", "idna", "charset_normalizer", "certifi")


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[\s]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _requirements_txt() -> set[str]:
    lines = (line.split("#", 1)[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines())
    return {_name(line) for line in lines if line}


def _pyproject_dependencies() -> set[str]:
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M)
    assert block is not None
    return {_name(item) for item in re.findall(r'"([^"]+)"', block.group(1))}


def test_requirements_pyproject_and_depcheck_list_the_same_packages() -> None:
    declared = set(RUNTIME_PACKAGES)
    assert _requirements_txt() == declared
    assert _pyproject_dependencies() == declared


def test_every_listed_module_is_found_here_and_a_missing_one_is_named() -> None:
    assert missing_packages() == []
    assert missing_packages({"requests": "requests", "not-there": "bobosync_no_such_module_xyz"}) == ["not-there"]


def test_the_message_gives_online_and_offline_commands() -> None:
    text = missing_message(["keyring", "tzlocal"], python="py", requirements=Path("req.txt"))
    assert "keyring, tzlocal" in text
    assert '"py" -m pip install -r "req.txt"' in text
    assert '"py" -m pip install --no-index --find-links DIR -r "req.txt"' in text


@pytest.fixture(scope="module")
def original_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv without pip whose only packages are the original tool's, linked from this one."""
    base = tmp_path_factory.mktemp("myenv")
    venv = base / "myenv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    packages = base / "packages"
    packages.mkdir()
    for module in ORIGINAL_MODULES:
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin is not None, module
        source = Path(spec.origin).parent
        (packages / source.name).symlink_to(source, target_is_directory=True)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    Path(site, "bobosync_test.pth").write_text(f"{packages}\n{ROOT}\n")
    return python


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "bobosync", "--version"],
        ["-c", "import sys; from bobosync.cli import main; sys.exit(main())"],  # the console script
        [str(ROOT / "bobosync" / "bobo_processor.py")],
    ],
    ids=["python -m bobosync", "bobosync console script", "bobo_processor.py"],
)
def test_an_entry_point_in_the_original_venv_names_every_missing_package(
    original_venv: Path, tmp_path: Path, command: list[str]
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run(
        [str(original_venv), *command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == EXIT_MISSING, done.stderr
    assert "Traceback" not in done.stderr
    listed = done.stderr.split(": ")[2].splitlines()[0].split(", ")
    assert listed == ["keyring", "cryptography", "tzlocal", "tzdata"]
    assert "-m pip install -r" in done.stderr
    assert "--no-index --find-links DIR -r" in done.stderr
    assert str(ROOT / "requirements.txt") in done.stderr
