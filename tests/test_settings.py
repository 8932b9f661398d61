"""Configuration: defaults, validation messages, .env lookup, path resolution, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from bobosync.errors import ConfigError
from bobosync.settings import Secret, Settings, find_env_file, load_settings
from tests.keyring_backend import FileKeyring, use_keyring

REQUIRED = {
    "ATHOC_SERVER_URL": "https://athoc.example",
    "CLIENT_ID": "client",
    "CLIENT_SECRET": "s3cr3t-client",
    "APIUSER": "operator",
    "PASSWORD": "pa55word!",
    "ORG_CODE": "ORG1",
}


def write_env(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    return path


def test_defaults_match_the_documented_table(tmp_path: Path) -> None:
    env = write_env(tmp_path / ".env", REQUIRED)
    s = load_settings(env_file=env, environ={})
    assert s.scope == "athoc.iws.web.api"
    assert s.request_timeout_seconds == 60 and s.http_retry_attempts == 4
    assert s.csv_directory == tmp_path / "crown_files"
    assert s.processed_directory == tmp_path / "processed_files"
    assert s.failed_files_directory == tmp_path / "failed_files"
    assert s.move_processed_files is False and s.processed_files_purge_days == 30
    assert (s.batch_size, s.max_users_per_request, s.max_retry_attempts) == (10, 1000, 5)
    assert s.file_settle_seconds == 5 and s.db_path == tmp_path / "bobo_mapping.db"
    assert (s.sync_mappings, s.sync_hour, s.sync_retry_days) == (True, 20, 2)
    assert (s.duty_status_field, s.collar_id_field) == ("On-Duty-DTG", "Collar-Number")
    assert s.user_attributes == ("Collar-Number", "FIRSTNAME", "LASTNAME")
    assert s.fetch_fields == ("LOGIN_ID", "Collar-Number", "FIRSTNAME", "LASTNAME")
    assert s.athoc_datetime_format == "%d/%m/%Y %H:%M:%S"
    assert (s.auto_cleanup_hours, s.log_level, s.log_purge_days, s.poll_interval_seconds) == (24, "INFO", 10, 60)
    assert s.api_base == "https://athoc.example/api/v2/orgs/ORG1"
    assert s.token_url == "https://athoc.example/AuthServices/Auth/connect/token"


def test_every_problem_is_reported_at_once_naming_setting_and_value(tmp_path: Path) -> None:
    values = dict(
        REQUIRED,
        BATCH_SIZE="ten",
        SYNC_HOUR="24",
        DISABLE_SSL_VERIFY="maybe",
        LOG_LEVEL="chatty",
        ATHOC_DATETIME_FORMAT="%H:%M",
    )
    del values["PASSWORD"]
    with use_keyring(FileKeyring(tmp_path / "empty-keyring.json")), pytest.raises(ConfigError) as caught:
        load_settings(env_file=write_env(tmp_path / ".env", values), environ={})
    text = "\n".join(caught.value.problems)
    for expected in (
        "PASSWORD: required",
        "BATCH_SIZE='ten'",
        "SYNC_HOUR=24",
        "DISABLE_SSL_VERIFY='maybe'",
        "LOG_LEVEL='CHATTY'",
        "ATHOC_DATETIME_FORMAT='%H:%M'",
    ):
        assert expected in text
    assert len(caught.value.problems) == 6


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://athoc.example", True),
        ("http://127.0.0.1:8080", True),
        ("http://localhost:8080", True),
        ("http://[::1]:8080", True),
        ("http://athoc.example", False),
        ("ftp://athoc.example", False),
        ("athoc.example", False),
    ],
)
def test_plain_http_only_for_loopback(tmp_path: Path, url: str, ok: bool) -> None:
    env = write_env(tmp_path / ".env", dict(REQUIRED, ATHOC_SERVER_URL=url))
    if ok:
        assert load_settings(env_file=env, environ={}).athoc_server_url == url
    else:
        with pytest.raises(ConfigError, match="ATHOC_SERVER_URL"):
            load_settings(env_file=env, environ={})


def test_process_environment_wins_over_env_file(tmp_path: Path) -> None:
    env = write_env(tmp_path / ".env", dict(REQUIRED, BATCH_SIZE="3"))
    assert load_settings(env_file=env, environ={"BATCH_SIZE": "7"}).batch_size == 7


def test_username_alias_only_from_the_env_file(tmp_path: Path) -> None:
    values = dict(REQUIRED)
    del values["APIUSER"]
    env = write_env(tmp_path / ".env", dict(values, USERNAME="svc-bobo"))
    assert load_settings(env_file=env, environ={"USERNAME": "WINDOWS-LOGIN"}).apiuser == "svc-bobo"
    env = write_env(tmp_path / ".env", values)
    with pytest.raises(ConfigError, match="APIUSER: required"):
        load_settings(env_file=env, environ={"USERNAME": "WINDOWS-LOGIN"})


def test_relative_paths_resolve_against_the_env_folder_and_unc_kept(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    env = write_env(
        conf / ".env",
        dict(
            REQUIRED,
            CSV_DIRECTORY="//server/share/crown_files",
            DB_PATH="data/map.db",
            LOG_DIRECTORY=str(tmp_path / "abs"),
        ),
    )
    s = load_settings(env_file=env, environ={})
    assert s.db_path == conf / "data" / "map.db"
    assert s.log_directory == tmp_path / "abs"
    assert str(s.csv_directory).replace("\\", "/").startswith("//server/share")


def test_env_file_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = write_env(tmp_path / "explicit.env", REQUIRED)
    named = write_env(tmp_path / "named.env", REQUIRED)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    write_env(cwd / ".env", REQUIRED)
    monkeypatch.chdir(cwd)
    assert find_env_file(explicit, {"BOBO_ENV_FILE": str(named)}) == explicit
    assert find_env_file(None, {"BOBO_ENV_FILE": str(named)}) == named
    assert find_env_file(None, {}) == cwd / ".env"


def test_missing_explicit_env_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(env_file=tmp_path / "nope.env", environ={})


def test_secrets_never_show_in_repr(tmp_path: Path) -> None:
    s = load_settings(env_file=write_env(tmp_path / ".env", REQUIRED), environ={})
    text = repr(s) + str(s)
    assert "pa55word!" not in text and "s3cr3t-client" not in text
    assert s.password.reveal() == "pa55word!"
    # Raw, and as a server echoing a URL or form body would show them.
    assert set(s.secret_values()) == {"pa55word!", "pa55word%21", "s3cr3t-client"}
    assert repr(Secret("x")) == "Secret('***')"


def test_folders_must_differ(tmp_path: Path) -> None:
    env = write_env(tmp_path / ".env", dict(REQUIRED, PROCESSED_DIRECTORY="crown_files"))
    with pytest.raises(ConfigError, match="must differ"):
        load_settings(env_file=env, environ={})


def test_settings_is_frozen(tmp_path: Path) -> None:
    s: Settings = load_settings(env_file=write_env(tmp_path / ".env", REQUIRED), environ={})
    with pytest.raises(AttributeError):
        s.batch_size = 3  # type: ignore[misc]


def test_plain_settings_take_their_default_from_the_one_place_it_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from bobosync import settings as settings_module

    fields = {f.name: f for f in dataclasses.fields(Settings)}
    assert len(settings_module.PLAIN_SETTINGS) >= 25
    for spec in settings_module.PLAIN_SETTINGS:
        assert spec.name.lower() in fields, f"{spec.name}: no Settings field {spec.name.lower()}"
    env = write_env(tmp_path / ".env", REQUIRED)
    # Change a default where it is written, and the reader follows.
    monkeypatch.setitem(settings_module._FIELD_DEFAULTS, "batch_size", 77)
    monkeypatch.setitem(settings_module._FIELD_DEFAULTS, "duty_status_field", "Other-Field")
    s = load_settings(env_file=env, environ={})
    assert (s.batch_size, s.duty_status_field) == (77, "Other-Field")
    # and the limits come from the table: BATCH_SIZE must be 0 or more
    with pytest.raises(ConfigError, match="BATCH_SIZE"):
        load_settings(env_file=write_env(tmp_path / ".env", {**REQUIRED, "BATCH_SIZE": "-1"}), environ={})


def _documented(template: str) -> dict[str, str]:
    """``NAME=value`` lines of ``.env_safe``, commented out (``# NAME=value``) or not."""
    import re

    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^#?\s*([A-Z][A-Z0-9_]+)=(.*)$", template, re.M)}


def test_env_safe_documents_every_setting_and_shows_each_default(tmp_path: Path) -> None:
    """The template operators copy is held to the settings table: it names every setting
    bobosync reads and nothing else, and the value it shows for a plain setting is the default
    written on the Settings field (a default changed in one place only fails here)."""
    from bobosync import settings as settings_module

    template = (Path(__file__).resolve().parents[1] / ".env_safe").read_text(encoding="utf-8")
    documented = _documented(template)
    # BOBO_ENV_FILE chooses the file itself; USERNAME (APIUSER's old name) is described in prose.
    known = settings_module.known_setting_names() - {"BOBO_ENV_FILE", "USERNAME"}
    assert "USERNAME is accepted instead of APIUSER" in template
    assert sorted(known - set(documented)) == [], "settings missing from .env_safe"
    assert sorted(set(documented) - known) == [], "names in .env_safe that bobosync does not read"

    folder = tmp_path / "site"
    folder.mkdir()
    shown = {spec.name: documented[spec.name] for spec in settings_module.PLAIN_SETTINGS if documented[spec.name]}
    from_template = load_settings(env_file=write_env(folder / ".env", {**REQUIRED, **shown}), environ={})
    defaults = load_settings(env_file=write_env(folder / ".env", REQUIRED), environ={})
    differ = [name for name in shown if getattr(from_template, name.lower()) != getattr(defaults, name.lower())]
    assert differ == [], f".env_safe shows a value other than the default for {differ}"
    assert len(shown) >= 25
