"""``bobosync check`` for what operators add: the SMTP server of the health e-mails (a real
aiosmtpd on loopback), METRICS_FILE, repeated settings, and DUTY_STATUS_FIELD judged with
bobosync's own records of who it booked on."""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bobosync import check as check_module
from bobosync.bobo_csv import Transaction
from bobosync.check import athoc as check_athoc
from bobosync.database import BOBODatabase
from bobosync.desired import DesiredState
from bobosync.resolution import EventOrder
from bobosync.simulator import AtHocSimulator
from bobosync.timebase import as_utc
from tests.conftest import TLSCerts
from tests.mail_server import MailServer
from tests.test_check import check

LOGIN = ("mailer", "Sm7p-pa55word!")


def test_smtp_connection_and_login_are_verified_and_nothing_is_sent(
    simulator: AtHocSimulator, sim_env: dict[str, str], tls_certs: TLSCerts, tmp_path: Path
) -> None:
    with MailServer(security="starttls", certs=tls_certs, login=LOGIN) as mail:
        outcome = check(tmp_path, {**sim_env, **mail.settings()})
        smtp = outcome.one("SMTP")
        assert outcome.code == 0 and smtp.status == "OK", outcome.text
        assert f"localhost:{mail.port}, STARTTLS (TLSv1." in smtp.detail
        assert f"logged in as {LOGIN[0]}; nothing sent" in smtp.detail
        assert "to control-room@force.example, it-duty@force.example" in smtp.detail
        assert mail.logins == [LOGIN[0]] and mail.messages == []

        wrong = check(tmp_path, {**sim_env, **mail.settings(), "SMTP_PASSWORD": "nope-nope"})
        line = wrong.one("SMTP")
        assert wrong.code == 1 and line.status == "FAIL"
        assert "check SMTP_USERNAME and SMTP_PASSWORD" in line.detail and "notify-test" in line.fix
        assert LOGIN[1] not in wrong.text and "nope-nope" not in wrong.text


def test_a_password_sent_in_the_clear_to_a_remote_relay_is_a_warning(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with MailServer(security="none", login=LOGIN) as mail:
        local = check(tmp_path, {**sim_env, **mail.settings()})
        assert local.one("SMTP").status == "OK" and "no TLS" in local.one("SMTP").detail
        assert "SMTP_SECURITY" not in local.statuses()  # loopback: the password crosses no network
        # Only loopback can be reached here: let the check take it for a remote relay.
        monkeypatch.setattr(check_athoc, "_is_loopback_host", lambda host: False)
        remote = check(tmp_path, {**sim_env, **mail.settings()})
    line = remote.one("SMTP_SECURITY")
    assert line.status == "WARN" and f"SMTP_PASSWORD for {LOGIN[0]} crosses the network unencrypted" in line.detail
    assert remote.code == 0


def test_email_off_and_metrics_file_lines(simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path) -> None:
    off = check(tmp_path, sim_env)
    assert off.one("e-mail").status == "OK" and "NOTIFY_EMAIL_TO is not set" in off.one("e-mail").detail
    assert off.one("METRICS_FILE").detail == "off: no metrics file is written"

    missing = check(tmp_path, sim_env, METRICS_FILE=str(tmp_path / "textfile" / "bobosync.prom"))
    line = missing.one("METRICS_FILE")
    assert missing.code == 1 and line.status == "FAIL" and "does not exist" in line.detail
    assert not (tmp_path / "textfile").exists()

    (tmp_path / "textfile").mkdir()
    wrong_name = check(tmp_path, sim_env, METRICS_FILE=str(tmp_path / "textfile" / "bobosync.txt"))
    assert wrong_name.one("METRICS_FILE").status == "WARN" and "bobosync.prom" in wrong_name.one("METRICS_FILE").fix
    good = check(tmp_path, sim_env, METRICS_FILE=str(tmp_path / "textfile" / "bobosync.prom"))
    assert good.one("METRICS_FILE").status == "OK" and good.code == 0
    assert list((tmp_path / "textfile").iterdir()) == []  # tested, nothing left


def test_a_setting_written_twice_is_a_warning(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    outcome = check(tmp_path, sim_env)
    assert "repeated settings" not in outcome.statuses()
    env = tmp_path / ".env"
    with env.open("a", encoding="utf-8") as handle:
        handle.write("BATCH_SIZE=5\nBATCH_SIZE=7\n")
    out = io.StringIO()
    check_module.run_check(env, out, environ={})
    assert "[WARN] repeated settings:" in out.getvalue()
    assert "BATCH_SIZE (2 times); only the last one is used" in out.getvalue()


def record_book_on(db_path: Path, applied_at: datetime) -> None:
    when = as_utc(applied_at)
    state = DesiredState(
        "00001",
        EventOrder(when, 0, "f.csv", 1),
        Transaction.BOOK_ON,
        applied_at,
        when,
        login_id="user00001@force.example",
        written_value=f"{applied_at:%d/%m/%Y %H:%M:%S}",
        written_at=when,
    )
    with BOBODatabase(db_path) as db:
        db.save_desired_states([(state, state.written_value or "")])


@pytest.mark.parametrize(("hours_ago", "expected"), [(2, "FAIL"), (30, "WARN")])
def test_duty_field_never_returned_fails_when_bobosync_booked_people_on(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path, hours_ago: int, expected: str
) -> None:
    record_book_on(Path(sim_env["DB_PATH"]), datetime.now() - timedelta(hours=hours_ago))
    outcome = check(tmp_path, sim_env, DUTY_STATUS_FIELD="On-Duty-Time")
    duty = outcome.one("DUTY_STATUS_FIELD")
    assert duty.status == expected and "DUTY_STATUS_FIELD" in duty.fix
    if expected == "FAIL":
        assert outcome.code == 1
        assert "bobosync's records show 1 person(s) booked on in the last 24 h and not off since" in duty.detail
    else:  # booked on longer ago than AUTO_CLEANUP_HOURS: nobody need be on duty now
        assert "either nobody is on duty, or the name is wrong" in duty.detail
