"""Health e-mails against a real SMTP server on loopback (aiosmtpd): plain, STARTTLS and
implicit TLS, with and without login; the transition rules over real passes against the
simulator; a failing server; no secret in any mail; ``notify-test`` and the settings."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Optional

import pytest

from bobosync.database import BOBODatabase
from bobosync.errors import ConfigError, MailError
from bobosync.notify import RETRY_FAILED_AFTER, RUN_KIND, Decision, Mailer, compose, notify_health
from bobosync.processor import BOBOProcessor
from bobosync.secret_store import SERVICE, entry_name
from bobosync.settings import Settings, load_settings
from bobosync.simulator import AtHocSimulator, export_row, write_bobo_file
from bobosync.status import UNHEALTHY, Reason, collect_status
from bobosync.timebase import as_utc, utc_now
from bobosync.worker import Worker
from tests.conftest import TLSCerts
from tests.harness import child_env
from tests.keyring_backend import FileKeyring, use_keyring
from tests.mail_server import MailServer, free_port

LOGIN = ("bobosync-mailer", "Sm7p-pa55word!")


def settings_for(tmp_path: Path, extra: Mapping[str, str]) -> Settings:
    return load_settings(env_file=tmp_path / ".env", environ=dict(extra))


@pytest.fixture
def mail(request: pytest.FixtureRequest, tls_certs: TLSCerts) -> Iterator[MailServer]:
    security, login = getattr(request, "param", ("starttls", LOGIN))
    with MailServer(security=security, certs=tls_certs, login=login) as server:
        yield server


# ---------------------------------------------------------------- the connection


@pytest.mark.parametrize(
    "mail",
    [("none", None), ("none", LOGIN), ("starttls", LOGIN), ("ssl", LOGIN), ("ssl", None)],
    indirect=True,
    ids=["plain", "plain+login", "starttls+login", "ssl+login", "ssl"],
)
def test_a_mail_goes_out_over_each_kind_of_connection(
    mail: MailServer, sim_env: dict[str, str], tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, mail.settings())
    mailer = Mailer(settings)
    described = mailer.verify()
    mailer.send("bobosync SIMORG: test", "line one\nline two")
    assert len(mail.messages) == 1
    message = mail.messages[0]
    assert message["Subject"] == "bobosync SIMORG: test"
    assert message["From"] == "bobosync@force.example"
    assert mail.envelopes[0][1] == ["control-room@force.example", "it-duty@force.example"]
    assert "line two" in message.get_payload(decode=True).decode()  # type: ignore[union-attr]
    if mail.security == "none":
        assert "no TLS" in described
    else:
        assert "TLSv1." in described
    if mail.login is not None:
        assert mail.logins == [LOGIN[0], LOGIN[0]] and f"logged in as {LOGIN[0]}" in described
    else:
        assert mail.logins == [] and "no login" in described


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"SMTP_PASSWORD": "not-the-password"}, "check SMTP_USERNAME and SMTP_PASSWORD"),
        ({"SSL_CERT_PATH": ""}, "certificate is not trusted"),
        ({"SMTP_SECURITY": "ssl"}, "check SMTP_SECURITY"),
        ({"SMTP_SECURITY": "none"}, "offers no login"),
        ({"SMTP_HOST": "smtp.exmaple.invalid"}, "SMTP_HOST 'smtp.exmaple.invalid' does not resolve"),
    ],
    ids=["wrong-password", "untrusted-certificate", "ssl-on-a-starttls-port", "login-without-tls", "bad-host"],
)
def test_each_failure_names_what_to_fix_and_never_the_password(
    mail: MailServer, sim_env: dict[str, str], tmp_path: Path, change: dict[str, str], expected: str
) -> None:
    settings = settings_for(tmp_path, {**mail.settings(), **change})
    with pytest.raises(MailError) as caught:
        Mailer(settings).send("subject", "body")
    assert expected in str(caught.value)
    assert LOGIN[1] not in str(caught.value) and mail.messages == []


def test_a_server_without_starttls_is_refused_rather_than_used_in_the_clear(
    sim_env: dict[str, str], tmp_path: Path
) -> None:
    with MailServer(security="none") as server:
        settings = settings_for(tmp_path, {**server.settings(), "SMTP_SECURITY": "starttls"})
        with pytest.raises(MailError, match="does not offer STARTTLS: set SMTP_SECURITY"):
            Mailer(settings).send("subject", "body")
        assert server.messages == []


def test_nothing_listening_and_a_refused_mail_are_mail_errors(
    mail: MailServer, sim_env: dict[str, str], tmp_path: Path
) -> None:
    closed = settings_for(tmp_path, {**mail.settings(), "SMTP_PORT": str(free_port())})
    with pytest.raises(MailError, match=r"nothing accepts connections on localhost:\d+: check SMTP_HOST and SMTP_PORT"):
        Mailer(closed).send("subject", "body")
    mail.refuse_data = "554 5.7.1 relaying denied"
    with pytest.raises(MailError, match=r"the server answered 554 5\.7\.1 relaying denied"):
        Mailer(settings_for(tmp_path, mail.settings())).send("subject", "body")


# ---------------------------------------------------------------- the transition rules


class Site:
    """One bobosync installation: each pass is a new processor (as Task Scheduler starts a new
    process), at a chosen instant."""

    def __init__(self, settings: Settings, sim: AtHocSimulator) -> None:
        self.settings = settings
        self.sim = sim
        self.now = datetime.now().replace(microsecond=0)

    def run_pass(self, advance: timedelta = timedelta(minutes=1)) -> int:
        self.now += advance
        # AtHoc's clock moves with the faked one, as real clocks would (else the clock check trips).
        self.sim.clock_offset = as_utc(self.now) - utc_now()
        processor = BOBOProcessor(self.settings, clock=lambda: self.now)
        try:
            return Worker(processor, 60).run_once(self.now).exit_code
        finally:
            processor.close()

    def notify_rows(self) -> list[tuple[str, str]]:
        with BOBODatabase(self.settings.db_path, read_only=True) as db:
            return [(str(r.counts.get("health")), r.status) for r in reversed(db.recent_runs(RUN_KIND, limit=50))]


def subjects(mail: MailServer) -> list[str]:
    return [str(message["Subject"]) for message in mail.messages]


def test_mails_follow_the_health_changes_of_real_passes(
    mail: MailServer, simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    site = Site(settings_for(tmp_path, {**mail.settings(), "NOTIFY_REPEAT_HOURS": "4"}), simulator)
    csv = Path(sim_env["CSV_DIRECTORY"])
    write_bobo_file(csv, [export_row("BON", "00001", site.now)], site.now)

    assert site.run_pass() == 0
    assert mail.messages == []  # a first pass that is healthy sends nothing

    simulator.fail_next(10_000, status=503)  # AtHoc down: the pass fails
    assert site.run_pass() == 1
    assert len(mail.messages) == 1
    first = mail.messages[0]
    assert str(first["Subject"]).startswith("bobosync SIMORG: UNHEALTHY - last pass failed at ")
    body = first.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "bobosync is now UNHEALTHY (it was HEALTHY)" in body
    assert "bobosync status: UNHEALTHY (exit 2)" in body  # the status text itself

    for _ in range(3):  # still unhealthy, within NOTIFY_REPEAT_HOURS: nothing more
        site.run_pass(timedelta(hours=1))
    assert len(mail.messages) == 1
    site.run_pass(timedelta(hours=1, minutes=1))  # 4 h 1 min after the first mail: a reminder
    assert len(mail.messages) == 2
    assert str(mail.messages[1]["Subject"]).startswith("bobosync SIMORG: UNHEALTHY (still) - last pass failed")
    assert "since " in mail.messages[1].get_payload(decode=True).decode()  # type: ignore[union-attr]

    simulator.clear_faults()
    assert site.run_pass() == 0
    assert subjects(mail)[2] == "bobosync SIMORG: HEALTHY again (was UNHEALTHY)"  # recovery: one mail
    site.run_pass()
    site.run_pass(timedelta(hours=5))
    assert len(mail.messages) == 3

    # A warning is a change of level too: a file in the failed folder.
    (csv / "BOBO_corrupt_output.csv").write_bytes(b"\x00\x01binary")
    site.run_pass()
    assert len(mail.messages) == 4
    assert subjects(mail)[3] == "bobosync SIMORG: WARNING - 1 file in the failed folder (reasons in <name>.error.txt)"
    site.run_pass(timedelta(hours=5))  # warnings are not repeated
    assert len(mail.messages) == 4
    assert site.notify_rows() == [("unhealthy", "ok"), ("unhealthy", "ok"), ("healthy", "ok"), ("warning", "ok")]

    secrets = [sim_env["PASSWORD"], sim_env["CLIENT_SECRET"], LOGIN[1]]
    for message in mail.messages:
        raw = message.as_string()
        assert not any(secret in raw for secret in secrets)


def test_a_first_pass_that_is_unhealthy_mails_at_once(
    mail: MailServer, simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    site = Site(settings_for(tmp_path, mail.settings()), simulator)
    simulator.fail_next(10_000, status=503)
    assert site.run_pass() == 1
    assert subjects(mail)[0].startswith("bobosync SIMORG: UNHEALTHY - last pass failed")


def test_a_failing_mail_server_is_a_warning_and_is_tried_again_later(
    simulator: AtHocSimulator,
    sim_env: dict[str, str],
    tls_certs: TLSCerts,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = MailServer(security="starttls", certs=tls_certs, login=LOGIN)
    site = Site(settings_for(tmp_path, server.settings()), simulator)
    simulator.fail_next(10_000, status=503)
    with caplog.at_level(logging.WARNING, logger="bobosync"):
        assert site.run_pass() == 1  # the pass's own result, not made worse by the mail
    warnings = [r.getMessage() for r in caplog.records if r.name == "bobosync.notify"]
    assert len(warnings) == 1 and warnings[0].startswith("health e-mail (UNHEALTHY) not sent: SMTP localhost:")
    assert "nothing accepts connections" in warnings[0]
    assert site.notify_rows() == [("unhealthy", "failed")]
    with BOBODatabase(site.settings.db_path, read_only=True) as db:
        report = collect_status(site.settings, db, site.now)
    assert any(error.kind == RUN_KIND and "nothing accepts connections" in error.message for error in report.errors)

    with server:
        site.run_pass(RETRY_FAILED_AFTER / 2)  # too soon after the failure: not tried
        assert server.messages == [] and len(site.notify_rows()) == 1
        site.run_pass(RETRY_FAILED_AFTER)
        assert len(server.messages) == 1
        assert str(server.messages[0]["Subject"]).startswith("bobosync SIMORG: UNHEALTHY - ")
        assert site.notify_rows() == [("unhealthy", "failed"), ("unhealthy", "ok")]

    # A pass whose mail server fails while AtHoc is fine still exits 0.
    simulator.clear_faults()
    assert site.run_pass(RETRY_FAILED_AFTER) == 0
    assert site.notify_rows()[-1] == ("healthy", "failed")


def test_no_secret_reaches_a_mail_even_if_a_message_held_one(
    mail: MailServer, sim_env: dict[str, str], tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, mail.settings())
    leaky = f"token endpoint said {sim_env['PASSWORD']} / {sim_env['CLIENT_SECRET']} / {LOGIN[1]}"
    with BOBODatabase(settings.db_path) as db:
        report = collect_status(settings, db, datetime.now())
    report.reasons.insert(0, Reason(UNHEALTHY, leaky))
    report.health = UNHEALTHY
    now = datetime.now()
    subject, body = compose(settings, report, Decision("change", UNHEALTHY, "healthy", now))
    assert sim_env["PASSWORD"] in subject  # compose builds it; the mailer blanks it out
    Mailer(settings).send(subject, body + leaky)
    raw = mail.messages[0].as_string()
    for secret in (sim_env["PASSWORD"], sim_env["CLIENT_SECRET"], LOGIN[1]):
        assert secret not in raw
    assert "token endpoint said *** / *** / ***" in raw


def test_nothing_is_sent_or_recorded_while_e_mail_is_off(
    simulator: AtHocSimulator, sim_env: dict[str, str], tmp_path: Path
) -> None:
    site = Site(settings_for(tmp_path, {}), simulator)
    simulator.fail_next(10_000, status=503)
    site.run_pass()
    assert site.notify_rows() == []


def test_notify_health_tells_nothing_new_twice(mail: MailServer, sim_env: dict[str, str], tmp_path: Path) -> None:
    settings = settings_for(tmp_path, mail.settings())
    now = datetime.now()
    with BOBODatabase(settings.db_path) as db:
        report = collect_status(settings, db, now)  # no pass recorded: unhealthy
        assert report.health == UNHEALTHY
        assert notify_health(settings, db, report, now) is True
        assert notify_health(settings, db, report, now + timedelta(minutes=1)) is None
    assert len(mail.messages) == 1


# ---------------------------------------------------------------- notify-test and the settings


def notify_test(env_file: Path, extra: Optional[Mapping[str, str]] = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bobosync", "--env-file", str(env_file), "notify-test"],
        env=child_env(extra),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_notify_test_sends_one_mail_and_says_so(mail: MailServer, sim_env: dict[str, str], tmp_path: Path) -> None:
    result = notify_test(tmp_path / ".env", mail.settings())
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(
        f"notify-test: test e-mail sent to control-room@force.example, it-duty@force.example via localhost:{mail.port}"
    )
    assert len(mail.messages) == 1
    assert str(mail.messages[0]["Subject"]).startswith("bobosync SIMORG: test e-mail (health now ")


def test_notify_test_exit_codes_when_off_or_failing(mail: MailServer, sim_env: dict[str, str], tmp_path: Path) -> None:
    off = notify_test(tmp_path / ".env")
    assert off.returncode == 2 and "NOTIFY_EMAIL_TO is not set" in off.stdout
    wrong = notify_test(tmp_path / ".env", {**mail.settings(), "SMTP_PASSWORD": "wrong-one"})
    assert wrong.returncode == 1
    assert "not sent" in wrong.stdout and "check SMTP_USERNAME and SMTP_PASSWORD" in wrong.stdout
    assert "wrong-one" not in wrong.stdout + wrong.stderr
    assert mail.messages == []


def test_settings_name_every_e_mail_problem(sim_env: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_for(
            tmp_path,
            {
                "NOTIFY_EMAIL_TO": "it@force.example, not-an-address",
                "SMTP_SECURITY": "tls",
                "SMTP_PORT": "99999",
                "NOTIFY_REPEAT_HOURS": "-1",
            },
        )
    problems = "\n".join(caught.value.problems)
    for expected in (
        "NOTIFY_EMAIL_TO: 'not-an-address' is not an e-mail address",
        "SMTP_SECURITY='tls'",
        "NOTIFY_EMAIL_FROM: required when NOTIFY_EMAIL_TO is set",
        "SMTP_HOST: required when NOTIFY_EMAIL_TO is set",
        "SMTP_PORT=99999",
        "NOTIFY_REPEAT_HOURS=-1.0",
    ):
        assert expected in problems
    with pytest.raises(ConfigError, match="SMTP_PASSWORD: set, but SMTP_USERNAME is not"):
        settings_for(
            tmp_path,
            {
                "NOTIFY_EMAIL_TO": "it@force.example",
                "NOTIFY_EMAIL_FROM": "b@force.example",
                "SMTP_HOST": "relay",
                "SMTP_PASSWORD": "x",
            },
        )


def test_smtp_port_defaults_follow_the_security(sim_env: dict[str, str], tmp_path: Path) -> None:
    base = {
        "NOTIFY_EMAIL_TO": "Control Room <cr@force.example>",
        "NOTIFY_EMAIL_FROM": "b@force.example",
        "SMTP_HOST": "relay.force.example",
    }
    assert settings_for(tmp_path, base).smtp_port == 25
    assert settings_for(tmp_path, base).smtp_security == "starttls"
    assert settings_for(tmp_path, {**base, "SMTP_SECURITY": "SSL"}).smtp_port == 465
    assert settings_for(tmp_path, {**base, "SMTP_SECURITY": "ssl", "SMTP_PORT": "2465"}).smtp_port == 2465


def test_smtp_password_can_live_in_the_credential_store(
    mail: MailServer, sim_env: dict[str, str], tmp_path: Path
) -> None:
    with use_keyring(FileKeyring(tmp_path / "keyring.json")) as store:
        values = {**mail.settings(), "SMTP_PASSWORD": "keyring"}
        with pytest.raises(ConfigError, match=r"SMTP_PASSWORD=keyring: no entry .*/SMTP_PASSWORD'"):
            settings_for(tmp_path, values)
        store.set_password(
            SERVICE,
            entry_name("SMTP_PASSWORD", sim_env["ATHOC_SERVER_URL"], sim_env["ORG_CODE"], sim_env["APIUSER"]),
            LOGIN[1],
        )
        settings = settings_for(tmp_path, values)
        assert settings.smtp_password.reveal() == LOGIN[1]
        assert LOGIN[1] in settings.secret_values()
        Mailer(settings).send("subject", "body")
    assert len(mail.messages) == 1
