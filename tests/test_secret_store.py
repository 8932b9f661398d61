"""Secrets at rest: PASSWORD / CLIENT_SECRET in the credential store through keyring.

No test touches a real credential store: in-process tests swap in the JSON-file backend of
tests/keyring_backend.py, child processes get it through PYTHON_KEYRING_BACKEND."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional

import pytest

from bobosync.errors import ConfigError
from bobosync.secret_store import (
    SERVICE,
    entry_name,
    resolve_secret,
    server_key,
)
from bobosync.set_secret import run_set_secret
from bobosync.settings import load_settings
from bobosync.simulator import SIM_CREDENTIALS, AtHocSimulator
from tests.keyring_backend import BACKEND_NAME, PATH_VARIABLE, BrokenKeyring, FileKeyring, no_store, use_keyring
from tests.test_e2e import child_env
from tests.test_settings import REQUIRED, write_env


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FileKeyring]:
    with use_keyring(FileKeyring(tmp_path / "keyring.json")) as backend:
        assert isinstance(backend, FileKeyring)
        yield backend


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def prompter(*answers: str) -> tuple[list[str], Callable[[str], str]]:
    asked: list[str] = []
    replies = iter(answers)

    def prompt(text: str) -> str:
        asked.append(text)
        return next(replies)

    return asked, prompt


# ---------------------------------------------------------------- naming


def test_entry_is_scoped_by_server_org_and_operator() -> None:
    assert SERVICE == "bobosync"
    assert entry_name("PASSWORD", "https://AtHoc.Example/", "ORG1", "svc") == "athoc.example/ORG1/svc/PASSWORD"
    assert server_key("https://athoc.example:8443/x") == "athoc.example:8443"
    assert server_key("http://[::1]:9000") == "[::1]:9000"
    assert server_key("not a url") == ""
    names = {
        entry_name("PASSWORD", url, org, user)
        for url, org, user in [
            ("https://a.example", "ORG1", "svc"),
            ("https://a.example", "ORG2", "svc"),
            ("https://b.example", "ORG1", "svc"),
            ("https://a.example", "ORG1", "svc2"),
        ]
    }
    assert len(names) == 4


# ---------------------------------------------------------------- settings


def test_keyring_and_empty_values_are_read_from_the_store(store: FileKeyring, tmp_path: Path) -> None:
    store.set_password(SERVICE, "athoc.example/ORG1/operator/PASSWORD", "from-the-store")
    store.set_password(SERVICE, "athoc.example/ORG1/operator/CLIENT_SECRET", "client-from-store")
    env = write_env(tmp_path / ".env", dict(REQUIRED, PASSWORD="keyring", CLIENT_SECRET=""))
    settings = load_settings(env_file=env, environ={})
    assert settings.password.reveal() == "from-the-store"
    assert settings.client_secret.reveal() == "client-from-store"
    assert "from-the-store" in settings.secret_values()  # so the log filter redacts it
    # Any letter case, and from the process environment too.
    env = write_env(tmp_path / ".env", dict(REQUIRED, PASSWORD="KeyRing"))
    assert load_settings(env_file=env, environ={}).password.reveal() == "from-the-store"
    assert load_settings(env_file=env, environ={"PASSWORD": "keyring"}).password.reveal() == "from-the-store"


def test_plain_values_never_ask_the_store(tmp_path: Path) -> None:
    with use_keyring(BrokenKeyring()) as broken:
        settings = load_settings(env_file=write_env(tmp_path / ".env", REQUIRED), environ={})
    assert settings.password.reveal() == "pa55word!"
    assert settings.client_secret.reveal() == "s3cr3t-client"
    assert isinstance(broken, BrokenKeyring) and broken.calls == 0


def test_plain_values_do_not_even_import_keyring(tmp_path: Path) -> None:
    env = write_env(tmp_path / ".env", REQUIRED)
    code = (
        "import sys; from pathlib import Path; from bobosync.settings import load_settings; "
        f"load_settings(Path({str(env)!r}), environ={{}}); print(sorted(m for m in sys.modules if 'keyring' in m))"
    )
    result = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_missing_entry_is_a_config_problem_naming_the_setting_and_the_fix(store: FileKeyring, tmp_path: Path) -> None:
    env = write_env(tmp_path / ".env", dict(REQUIRED, PASSWORD="keyring", BATCH_SIZE="ten"))
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=env, environ={})
    problems = caught.value.problems
    assert len(problems) == 2  # every problem at once: the keyring one and BATCH_SIZE
    assert problems[0].startswith("PASSWORD=keyring: no entry 'athoc.example/ORG1/operator/PASSWORD'")
    assert f"python -m bobosync --env-file {env} set-secret PASSWORD" in problems[0]
    assert "BATCH_SIZE='ten'" in problems[1]


def test_absent_everywhere_keeps_the_required_wording(store: FileKeyring, tmp_path: Path) -> None:
    values = dict(REQUIRED)
    del values["CLIENT_SECRET"]
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=write_env(tmp_path / ".env", values), environ={})
    (problem,) = caught.value.problems
    assert problem.startswith("CLIENT_SECRET: required, not set (in the environment, the .env file or the credential")
    assert "set-secret CLIENT_SECRET" in problem


def test_no_usable_store_and_a_failing_store_are_config_problems(tmp_path: Path) -> None:
    env = write_env(tmp_path / ".env", dict(REQUIRED, PASSWORD="keyring"))
    with use_keyring(no_store()), pytest.raises(ConfigError) as caught:
        load_settings(env_file=env, environ={})
    (problem,) = caught.value.problems
    assert problem.startswith("PASSWORD=keyring: no credential store is available to account")
    assert "put the value in the .env file instead" in problem
    with use_keyring(BrokenKeyring()), pytest.raises(ConfigError) as caught:
        load_settings(env_file=env, environ={})
    (problem,) = caught.value.problems
    assert "could not be read: KeyringError: the collection is locked" in problem


def test_lookup_waits_for_the_settings_that_name_the_entry(store: FileKeyring) -> None:
    value, problem = resolve_secret("PASSWORD", "keyring", "https://athoc.example", "", "svc", None)
    assert value is None and problem is not None and "set those first" in problem
    value, problem = resolve_secret("PASSWORD", "", "", "ORG1", "svc", None)
    assert value is None and problem == "PASSWORD: required, not set (in the environment or the .env file)"


# ---------------------------------------------------------------- set-secret, in process


def test_set_secret_from_a_terminal_asks_twice_and_stores(store: FileKeyring, tmp_path: Path) -> None:
    env = write_env(tmp_path / ".env", dict(REQUIRED, PASSWORD="keyring"))
    out, err = io.StringIO(), io.StringIO()
    asked, prompt = prompter("  n3w-Secret ", "  n3w-Secret ")
    code = run_set_secret("PASSWORD", env, out, err=err, stdin=FakeTty(), environ={}, prompt=prompt)
    assert code == 0, err.getvalue()
    assert len(asked) == 2
    assert store.get_password(SERVICE, "athoc.example/ORG1/operator/PASSWORD") == "n3w-Secret"
    assert "n3w-Secret" not in out.getvalue() + err.getvalue() + "".join(asked)
    assert "entry 'athoc.example/ORG1/operator/PASSWORD'" in out.getvalue()
    assert load_settings(env_file=env, environ={}).password.reveal() == "n3w-Secret"


@pytest.mark.parametrize(
    ("answers", "reason"),
    [(("one", "two"), "the two entries differ"), (("", ""), "empty value"), (("   ", "   "), "empty value")],
)
def test_set_secret_refuses_mismatch_and_empty(
    store: FileKeyring, tmp_path: Path, answers: tuple[str, str], reason: str
) -> None:
    env = write_env(tmp_path / ".env", REQUIRED)
    out, err = io.StringIO(), io.StringIO()
    _, prompt = prompter(*answers)
    code = run_set_secret("PASSWORD", env, out, err=err, stdin=FakeTty(), environ={}, prompt=prompt)
    assert code == 2
    assert reason in err.getvalue() and "Nothing was stored" in err.getvalue()
    assert not (tmp_path / "keyring.json").exists()


def test_set_secret_warns_when_a_plain_value_still_wins(store: FileKeyring, tmp_path: Path) -> None:
    env = write_env(tmp_path / ".env", REQUIRED)  # PASSWORD=pa55word!
    out = io.StringIO()
    code = run_set_secret("PASSWORD", env, out, err=io.StringIO(), stdin=io.StringIO("stored\n"), environ={})
    assert code == 0
    assert "still has a plain value in" in out.getvalue() and "pa55word!" not in out.getvalue()


def test_set_secret_needs_the_naming_settings_and_a_store(tmp_path: Path) -> None:
    values = dict(REQUIRED)
    del values["ORG_CODE"]
    env = write_env(tmp_path / ".env", values)
    err = io.StringIO()
    with use_keyring(FileKeyring(tmp_path / "keyring.json")):
        code = run_set_secret("PASSWORD", env, io.StringIO(), err=err, stdin=io.StringIO("x\n"), environ={})
    assert code == 2 and "set ORG_CODE in" in err.getvalue()
    env = write_env(tmp_path / ".env", REQUIRED)
    err = io.StringIO()
    with use_keyring(no_store()):
        code = run_set_secret("PASSWORD", env, io.StringIO(), err=err, stdin=io.StringIO("x\n"), environ={})
    assert code == 2
    assert "no credential store is available" in err.getvalue()
    assert "on Linux a Secret Service" in err.getvalue() and "chmod 640" in err.getvalue()
    err = io.StringIO()
    with use_keyring(BrokenKeyring()):
        code = run_set_secret("PASSWORD", env, io.StringIO(), err=err, stdin=io.StringIO("hush-hush\n"), environ={})
    assert code == 2 and "KeyringError: the collection is locked" in err.getvalue()
    assert "hush-hush" not in err.getvalue()


# ---------------------------------------------------------------- the real CLI in a child process


def run_bobosync(
    tmp_path: Path, *args: str, keyring_file: Optional[Path], stdin: str = "", backend: str = BACKEND_NAME
) -> subprocess.CompletedProcess[str]:
    extra = {"PYTHON_KEYRING_BACKEND": backend}
    if keyring_file is not None:
        extra[PATH_VARIABLE] = str(keyring_file)
    return subprocess.run(
        [sys.executable, "-m", "bobosync", "--env-file", str(tmp_path / ".env"), *args],
        cwd=tmp_path,
        env=child_env(extra),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_cli_set_secret_then_a_pass_reads_both_secrets_from_the_store(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    keyring_file = tmp_path / "keyring.json"
    write_env(tmp_path / ".env", dict(sim_env, PASSWORD="keyring", CLIENT_SECRET=""))
    password, client_secret = SIM_CREDENTIALS["password"], SIM_CREDENTIALS["client_secret"]
    # Before set-secret: exit 2 naming both settings.
    before = run_bobosync(tmp_path, keyring_file=keyring_file)
    assert before.returncode == 2
    assert "PASSWORD=keyring: no entry" in before.stderr and "CLIENT_SECRET: required" in before.stderr
    for name, value in (("PASSWORD", password), ("CLIENT_SECRET", client_secret)):
        stored = run_bobosync(tmp_path, "set-secret", name, keyring_file=keyring_file, stdin=value + "\n")
        assert stored.returncode == 0, stored.stderr
        assert f"{name} stored in the credential store" in stored.stdout
        assert value not in stored.stdout + stored.stderr
    entries = json.loads(keyring_file.read_text(encoding="utf-8"))[SERVICE]
    key = server_key(simulator.url)
    prefix = f"{key}/{SIM_CREDENTIALS['org_code']}/{SIM_CREDENTIALS['username']}"
    assert entries == {f"{prefix}/PASSWORD": password, f"{prefix}/CLIENT_SECRET": client_secret}
    result = run_bobosync(tmp_path, "--log-level", "DEBUG", keyring_file=keyring_file)
    assert result.returncode == 0, result.stderr
    assert simulator.tokens_issued == 1
    log_text = (tmp_path / "logs" / "bobo_processor.log").read_text(encoding="utf-8")
    for secret in (password, client_secret):
        assert secret not in result.stdout + result.stderr + log_text


def test_cli_plain_env_values_still_work_without_any_store(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    result = run_bobosync(tmp_path, keyring_file=None, backend="keyring.backends.fail.Keyring")
    assert result.returncode == 0, result.stderr
    assert simulator.tokens_issued == 1


def test_cli_without_a_store_explains_what_to_do(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    result = run_bobosync(
        tmp_path,
        "set-secret",
        "PASSWORD",
        keyring_file=None,
        backend="keyring.backends.fail.Keyring",
        stdin="whatever\n",
    )
    assert result.returncode == 2
    assert "no credential store is available" in result.stderr and "Nothing was stored" in result.stderr
    write_env(tmp_path / ".env", dict(sim_env, PASSWORD="keyring"))
    result = run_bobosync(tmp_path, keyring_file=None, backend="keyring.backends.fail.Keyring")
    assert result.returncode == 2
    assert "PASSWORD=keyring: no credential store is available" in result.stderr
    assert simulator.tokens_issued == 0
