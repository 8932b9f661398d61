"""Configuration: one typed, validated :class:`Settings` object.

Values come from the process environment and a ``.env`` file (python-dotenv); the process
environment wins. :func:`load_settings` validates everything once and raises
:class:`~bobosync.errors.ConfigError` listing *every* problem, each naming the setting, the
value and what is expected. The setting names are those of the original tool, so an existing
``.env`` keeps working.

Where the ``.env`` file is looked for, first match wins: ``--env-file PATH``, the
``BOBO_ENV_FILE`` variable, ``./.env``, beside ``bobo_processor.py`` (where the original kept
it), the repository root. Relative paths in the settings resolve against the folder holding
the ``.env`` file that was used (the current folder when there is none).

PASSWORD and CLIENT_SECRET written as ``keyring`` (or left empty) are read from the operating
system's credential store through :mod:`bobosync.secret_store`; the keyring library is imported
only then.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Callable, Optional, TypedDict, TypeVar
from urllib.parse import quote, quote_plus, urlsplit

from dotenv import dotenv_values
from dotenv.parser import parse_stream

from .errors import ConfigError
from .timebase import machine_zone, zone_named

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: The settings that may live in the credential store (``bobosync set-secret NAME``).
SECRET_NAMES = ("PASSWORD", "CLIENT_SECRET", "SMTP_PASSWORD")
RECONCILE_MODES = ("repair", "report")
#: How a BOBO Employee_ID finds its collar number (see :mod:`bobosync.mapping`).
COLLAR_MATCH_MODES = ("exact", "numeric")
TRUE_WORDS = {"1", "true", "yes", "on", "y", "t"}
FALSE_WORDS = {"0", "false", "no", "off", "n", "f", ""}

T = TypeVar("T")


class Secret:
    """A string that never shows itself in ``repr``/``str`` (logs, tracebacks, dataclass dumps)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class Settings:
    """Every setting of bobosync, validated. Field ``x_y`` is the ``.env`` setting ``X_Y``."""

    athoc_server_url: str
    client_id: str
    client_secret: Secret
    apiuser: str
    password: Secret
    org_code: str
    scope: str = "athoc.iws.web.api"
    disable_ssl_verify: bool = False
    ssl_cert_path: Optional[Path] = None
    http_proxy: Optional[str] = None
    https_proxy: Optional[str] = None
    request_timeout_seconds: float = 60.0
    http_retry_attempts: int = 4
    http_retry_backoff_seconds: float = 1.0
    csv_directory: Path = Path("crown_files")
    processed_directory: Path = Path("processed_files")
    failed_files_directory: Path = Path("failed_files")
    move_processed_files: bool = False
    processed_files_purge_days: int = 30
    #: Days the per-person audit (``bobosync trace``) keeps its rows; 0 = record nothing.
    audit_retention_days: int = 30
    batch_size: int = 10
    max_users_per_request: int = 1000
    max_retry_attempts: int = 5
    file_settle_seconds: float = 5.0
    db_path: Path = Path("bobo_mapping.db")
    sync_mappings: bool = True
    sync_hour: int = 20
    sync_retry_days: int = 2
    duty_status_field: str = "On-Duty-DTG"
    collar_id_field: str = "Collar-Number"
    #: ``exact`` or ``numeric`` (all-digit collars compared without leading zeros).
    collar_match: str = "exact"
    user_attributes: tuple[str, ...] = ("Collar-Number", "FIRSTNAME", "LASTNAME")
    athoc_datetime_format: str = "%d/%m/%Y %H:%M:%S"
    auto_cleanup_hours: float = 24.0
    #: Minutes between reconciles (AtHoc read back and compared with the desired state); 0 = off.
    reconcile_minutes: float = 15.0
    #: ``repair`` (send the differences) or ``report`` (only report them).
    reconcile_mode: str = "repair"
    #: Minutes a write whose answer was lost is read back after the loss.
    reconcile_suspect_minutes: float = 30.0
    log_level: str = "INFO"
    log_directory: Path = Path("logs")
    log_purge_days: int = 10
    poll_interval_seconds: float = 60.0
    #: Health e-mails (:mod:`bobosync.notify`): off while NOTIFY_EMAIL_TO is empty.
    notify_email_to: tuple[str, ...] = ()
    notify_email_from: str = ""
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_security: str = "starttls"
    smtp_username: str = ""
    smtp_password: Secret = field(default_factory=lambda: Secret(""))
    notify_repeat_hours: float = 4.0
    #: The Prometheus text file written after every pass (:mod:`bobosync.metrics`); None: off.
    metrics_file: Optional[Path] = None
    #: The zone of BOBO's wall-clock readings (default: this machine's zone).
    bobo_timezone: tzinfo = field(default_factory=machine_zone)
    #: The zone AtHoc's duty values are read in (default: BOBO_TIMEZONE).
    athoc_timezone: Optional[tzinfo] = None
    #: How far this machine's clock may differ from AtHoc's; 0 turns the check off.
    clock_tolerance_minutes: float = 5.0
    #: The ``.env`` file that was read, if any (informational).
    env_file: Optional[Path] = field(default=None, compare=False)
    #: Where the settings came from, for messages: the ``.env`` file and how it was found, or
    #: that none was found and where it was looked for.
    env_source: str = field(default="", compare=False)
    #: Remarks about the ``.env`` file that do not stop a run (names bobosync does not know,
    #: names written twice); every pass logs them as WARNINGs.
    env_notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def athoc_zone(self) -> tzinfo:
        """ATHOC_TIMEZONE, or BOBO_TIMEZONE when it is not set."""
        return self.athoc_timezone if self.athoc_timezone is not None else self.bobo_timezone

    @property
    def clock_tolerance(self) -> Optional[timedelta]:
        """CLOCK_TOLERANCE_MINUTES as a timedelta; None when the clock check is off."""
        minutes = self.clock_tolerance_minutes
        return timedelta(minutes=minutes) if minutes > 0 else None

    @property
    def api_base(self) -> str:
        """``{ATHOC_SERVER_URL}/api/v2/orgs/{ORG_CODE}``."""
        return f"{self.athoc_server_url}/api/v2/orgs/{self.org_code}"

    @property
    def token_url(self) -> str:
        return f"{self.athoc_server_url}/AuthServices/Auth/connect/token"

    @property
    def lock_path(self) -> Path:
        """The single-instance lock file, beside the database."""
        return self.db_path.with_name(self.db_path.name + ".lock")

    @property
    def fetch_fields(self) -> tuple[str, ...]:
        """USER_ATTRIBUTES plus LOGIN_ID and COLLAR_ID_FIELD, without duplicates, in order."""
        fields = ["LOGIN_ID", self.collar_id_field, *self.user_attributes]
        return tuple(dict.fromkeys(fields))

    @property
    def listing_fields(self) -> tuple[str, ...]:
        """What one listing of every user reads: FETCH fields and DUTY_STATUS_FIELD. The mapping
        sync, the reconcile and the auto-cleanup of one pass share it."""
        return tuple(dict.fromkeys([*self.fetch_fields, self.duty_status_field]))

    def secret_values(self) -> tuple[str, ...]:
        """The values that must never be written anywhere, also as they look inside a URL or
        a form body (a server or proxy may echo the request), longest first."""
        return secret_forms(*(s.reveal() for s in (self.password, self.client_secret, self.smtp_password) if s))

    @property
    def notify_enabled(self) -> bool:
        return bool(self.notify_email_to)


@dataclass(frozen=True)
class PlainSetting:
    """A setting read the plain way: how it is read and its limits. Its default is the
    :class:`Settings` field's (``NAME`` -> ``name``), so that it is written once."""

    name: str
    kind: str  # text, boolean, integer, number, path, choice, field_list
    low: float = 0
    high: Optional[int] = None
    #: number: must be above ``low`` (not merely at least ``low``)
    positive: bool = False
    choices: tuple[str, ...] = ()

    @property
    def default(self) -> Any:
        return _FIELD_DEFAULTS[self.name.lower()]


#: The settings read the plain way; the others (the AtHoc connection, secrets, zones, proxies,
#: e-mail) have readers of their own in :meth:`_Reader.build`.
PLAIN_SETTINGS: tuple[PlainSetting, ...] = (
    PlainSetting("SCOPE", "text"),
    PlainSetting("DISABLE_SSL_VERIFY", "boolean"),
    PlainSetting("REQUEST_TIMEOUT_SECONDS", "number", positive=True),
    PlainSetting("HTTP_RETRY_ATTEMPTS", "integer", low=1, high=20),
    PlainSetting("HTTP_RETRY_BACKOFF_SECONDS", "number"),
    PlainSetting("CSV_DIRECTORY", "path"),
    PlainSetting("PROCESSED_DIRECTORY", "path"),
    PlainSetting("FAILED_FILES_DIRECTORY", "path"),
    PlainSetting("MOVE_PROCESSED_FILES", "boolean"),
    PlainSetting("PROCESSED_FILES_PURGE_DAYS", "integer"),
    PlainSetting("AUDIT_RETENTION_DAYS", "integer"),
    PlainSetting("BATCH_SIZE", "integer"),
    PlainSetting("MAX_USERS_PER_REQUEST", "integer", low=1, high=10000),
    PlainSetting("MAX_RETRY_ATTEMPTS", "integer", low=1),
    PlainSetting("FILE_SETTLE_SECONDS", "number"),
    PlainSetting("DB_PATH", "path"),
    PlainSetting("SYNC_MAPPINGS", "boolean"),
    PlainSetting("SYNC_HOUR", "integer", high=23),
    PlainSetting("SYNC_RETRY_DAYS", "integer", low=1),
    PlainSetting("DUTY_STATUS_FIELD", "text"),
    PlainSetting("COLLAR_ID_FIELD", "text"),
    PlainSetting("COLLAR_MATCH", "choice", choices=COLLAR_MATCH_MODES),
    PlainSetting("USER_ATTRIBUTES", "field_list"),
    PlainSetting("AUTO_CLEANUP_HOURS", "number"),
    PlainSetting("RECONCILE_MINUTES", "number"),
    PlainSetting("RECONCILE_MODE", "choice", choices=RECONCILE_MODES),
    PlainSetting("RECONCILE_SUSPECT_MINUTES", "number"),
    PlainSetting("LOG_DIRECTORY", "path"),
    PlainSetting("LOG_PURGE_DAYS", "integer"),
    PlainSetting("POLL_INTERVAL_SECONDS", "number", positive=True),
    PlainSetting("CLOCK_TOLERANCE_MINUTES", "number"),
)


def secret_forms(*values: str) -> tuple[str, ...]:
    """Each value raw, percent-encoded and form-encoded (``+`` for spaces), longest first."""
    forms = {form for value in values if value for form in (value, quote(value, safe=""), quote_plus(value))}
    return tuple(sorted(forms, key=len, reverse=True))


#: Settings fields that are not ``.env`` settings.
_NOT_SETTINGS = frozenset({"env_file", "env_source", "env_notes"})
#: Names read from the ``.env`` file or the environment that are not Settings fields.
_OTHER_NAMES = frozenset({"USERNAME", "BOBO_ENV_FILE"})
SMTP_SECURITY_MODES = ("none", "starttls", "ssl")


def known_setting_names() -> frozenset[str]:
    """Every name bobosync reads from a ``.env`` file."""
    fields = {f.name.upper() for f in dataclasses.fields(Settings) if f.name not in _NOT_SETTINGS}
    return frozenset(fields | _OTHER_NAMES)


def unknown_setting_names(names: Iterable[str]) -> list[str]:
    """The ``names`` bobosync does not read (misspelt?), sorted; names are case-sensitive."""
    known = known_setting_names()
    return sorted({name for name in names if name not in known})


def repeated_setting_names(path: Path) -> dict[str, int]:
    """Names written more than once in the ``.env`` file ``path`` (the last one is used), with
    how often; parsed as python-dotenv parses it, so quoted multi-line values are not miscounted."""
    try:
        with open(path, encoding="utf-8-sig") as stream:
            keys = [binding.key for binding in parse_stream(stream) if binding.key is not None]
    except (OSError, UnicodeDecodeError):
        return {}
    counts = Counter(keys)
    return {key: count for key, count in sorted(counts.items()) if count > 1}


def env_file_notes(path: Path, file_values: Mapping[str, object]) -> tuple[str, ...]:
    """WARNING lines for names in the ``.env`` file that bobosync does not read, and for
    names written twice."""
    notes = []
    unknown = unknown_setting_names(file_values)
    if unknown:
        notes.append(
            f"{path}: {', '.join(unknown)}: not a bobosync setting, ignored "
            "(misspelt? names are case-sensitive; see .env_safe)"
        )
    for name, count in repeated_setting_names(path).items():
        notes.append(f"{path}: {name} is written {count} times; only the last one is used")
    return tuple(notes)


def _env_search_places() -> str:
    return (
        f"--env-file, the BOBO_ENV_FILE variable, {Path.cwd() / '.env'}, {PACKAGE_DIR / '.env'}, {REPO_ROOT / '.env'}"
    )


def describe_env_source(path: Optional[Path], explicit: Optional[Path], environ: Mapping[str, str]) -> str:
    """Where the settings come from, for messages: ``path`` and how it was found (``explicit``
    is ``--env-file``), or that no ``.env`` file was found and where it was looked for."""
    if path is None:
        return f"no .env file found (looked for: {_env_search_places()}): settings from the process environment only"
    if explicit is not None:
        how = "--env-file"
    elif environ.get("BOBO_ENV_FILE"):
        how = "BOBO_ENV_FILE"
    else:
        try:
            parent = path.resolve().parent
        except OSError:
            parent = path.parent
        how = (
            "beside bobo_processor.py"
            if parent == PACKAGE_DIR
            else "the repository root"
            if parent == REPO_ROOT
            else "the current folder"
        )
    try:
        shown = path.resolve()
    except OSError:
        shown = path
    return f"read from {shown} ({how}); the process environment wins over it"


def find_env_file(explicit: Optional[Path] = None, environ: Optional[Mapping[str, str]] = None) -> Optional[Path]:
    """Return the ``.env`` file to read, or None when there is none anywhere we look."""
    environ = os.environ if environ is None else environ
    if explicit is not None:
        return explicit
    if environ.get("BOBO_ENV_FILE"):
        return Path(environ["BOBO_ENV_FILE"])
    for candidate in (Path.cwd() / ".env", PACKAGE_DIR / ".env", REPO_ROOT / ".env"):
        if candidate.is_file():
            return candidate
    return None


def load_settings(
    env_file: Optional[Path] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> Settings:
    """Read, merge and validate the configuration. Raises ConfigError listing every problem."""
    return _open_reader(env_file, environ).build()


def read_raw_values(
    names: Iterable[str],
    env_file: Optional[Path] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> tuple[Optional[Path], dict[str, Optional[str]]]:
    """The ``.env`` file used and the raw values of ``names`` as :func:`load_settings` sees them
    (environment over file, stripped, APIUSER falling back to a USERNAME written in the file),
    without validating anything. For ``set-secret``, which runs before the settings are complete."""
    reader = _open_reader(env_file, environ)
    values = {name: reader.raw(name) for name in names}
    if "APIUSER" in values and not values["APIUSER"]:
        values["APIUSER"] = reader.file_values.get("USERNAME", "").strip() or values["APIUSER"]
    return reader.env_file, values


def _open_reader(env_file: Optional[Path], environ: Optional[Mapping[str, str]]) -> _Reader:
    environ = os.environ if environ is None else environ
    path = find_env_file(env_file, environ)
    file_values: dict[str, str] = {}
    if path is not None:
        if not path.is_file():
            raise ConfigError([f"env file {path}: not found (given by --env-file or BOBO_ENV_FILE)"])
        file_values = {k: v for k, v in dotenv_values(path).items() if v is not None}
    base_dir = path.resolve().parent if path is not None else Path.cwd()
    reader = _Reader(file_values, environ, base_dir, path)
    reader.source = describe_env_source(path, env_file, environ)
    return reader


class _NotifySettings(TypedDict):
    notify_email_to: tuple[str, ...]
    notify_email_from: str
    smtp_host: str
    smtp_port: int
    smtp_security: str
    smtp_username: str
    smtp_password: Secret
    notify_repeat_hours: float


_FIELD_DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in dataclasses.fields(Settings) if f.default is not dataclasses.MISSING
}


class _Reader:
    """Collects values and problems; every ``get_*`` records a problem instead of raising."""

    def __init__(
        self,
        file_values: Mapping[str, str],
        environ: Mapping[str, str],
        base_dir: Path,
        env_file: Optional[Path],
    ) -> None:
        self.file_values = file_values
        self.environ = environ
        self.base_dir = base_dir
        self.env_file = env_file
        self.source = ""
        self.problems: list[str] = []

    def raw(self, name: str) -> Optional[str]:
        value = self.environ.get(name)
        if value is None:
            value = self.file_values.get(name)
        return value.strip() if value is not None else None

    def _parse(self, name: str, default: T, parse: Callable[[str], T], expected: str) -> T:
        value = self.raw(name)
        if value is None or value == "":
            return default
        try:
            return parse(value)
        except ValueError:
            self.problems.append(f"{name}={value!r}: expected {expected}")
            return default

    def required(self, name: str, fallback: Optional[str] = None) -> str:
        value = self.raw(name) or fallback
        if not value:
            self.problems.append(f"{name}: required, not set (in the environment or the .env file)")
            return ""
        return value

    def secret(self, name: str, server_url: str, org_code: str, apiuser: str) -> Secret:
        """A plain value as written; ``keyring`` or empty: the operating system's credential store."""
        value = self.raw(name)
        if value and value.lower() != "keyring":
            return Secret(value)
        from .secret_store import resolve_secret  # imports the keyring library only now

        found, problem = resolve_secret(name, value or "", server_url, org_code, apiuser, self.env_file)
        if problem:
            self.problems.append(problem)
        return Secret(found or "")

    def text(self, name: str, default: str) -> str:
        return self.raw(name) or default

    def boolean(self, name: str, default: bool) -> bool:
        def parse(value: str) -> bool:
            lowered = value.lower()
            if lowered in TRUE_WORDS:
                return True
            if lowered in FALSE_WORDS:
                return False
            raise ValueError(value)

        return self._parse(name, default, parse, "true or false")

    def integer(self, name: str, default: int, low: int, high: Optional[int] = None) -> int:
        expected = f"a whole number from {low}" + (f" to {high}" if high is not None else " up")
        value = self._parse(name, default, int, expected)
        if value < low or (high is not None and value > high):
            self.problems.append(f"{name}={value!r}: expected {expected}")
            return default
        return value

    def number(self, name: str, default: float, low: float, *, strictly_positive: bool = False) -> float:
        expected = f"a number {'above' if strictly_positive else 'from'} {low:g}"
        value = self._parse(name, default, float, expected)
        if value < low or (strictly_positive and value <= low) or value != value:
            self.problems.append(f"{name}={value!r}: expected {expected}")
            return default
        return value

    def path(self, name: str, default: str) -> Path:
        value = self.raw(name) or default
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() or _is_unc(value) else self.base_dir / candidate

    def optional_path(self, name: str) -> Optional[Path]:
        """A path setting that is off (None) while empty."""
        return self.path(name, "") if self.raw(name) else None

    def server_url(self) -> str:
        url = self.required("ATHOC_SERVER_URL").rstrip("/")
        if not url:
            return url
        parts = urlsplit(url)
        if parts.scheme == "https" and parts.hostname:
            return url
        if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
            return url
        self.problems.append(
            f"ATHOC_SERVER_URL={url!r}: expected an https:// URL "
            "(plain http:// only for a loopback host such as the simulator)"
        )
        return url

    def proxy(self, name: str) -> Optional[str]:
        value = self.raw(name) or None
        if value is not None and urlsplit(value).scheme not in ("http", "https", "socks5", "socks5h"):
            self.problems.append(f"{name}={value!r}: expected a proxy URL such as http://proxy:8080")
        return value

    def datetime_format(self) -> str:
        fmt = self.text("ATHOC_DATETIME_FORMAT", "%d/%m/%Y %H:%M:%S")
        sample = datetime(2024, 6, 17, 14, 30, 45)
        try:
            parsed = datetime.strptime(sample.strftime(fmt), fmt)
        except ValueError:
            parsed = None
        if parsed is None or parsed.date() != sample.date():
            self.problems.append(
                f"ATHOC_DATETIME_FORMAT={fmt!r}: expected a strftime format holding day, month "
                "and year that reads back what it writes, such as %d/%m/%Y %H:%M:%S"
            )
        return fmt

    def zone(self, name: str, default: Optional[tzinfo]) -> Optional[tzinfo]:
        """An IANA zone name; empty: ``default`` (None: this machine's own zone)."""
        value = self.raw(name)
        try:
            if value:
                return zone_named(value)
            return default if default is not None else machine_zone()
        except ValueError as exc:
            if value:
                self.problems.append(f"{name}={value!r}: expected an IANA time zone name such as Europe/London")
            else:
                self.problems.append(f"{name}: not set, and {exc}; set it to an IANA name such as Europe/London")
            return None

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(name, default).lower()
        if value not in choices:
            self.problems.append(f"{name}={value!r}: expected one of {', '.join(choices)}")
            return default
        return value

    def log_level(self) -> str:
        level = self.text("LOG_LEVEL", "INFO").upper()
        if level not in LOG_LEVELS:
            self.problems.append(f"LOG_LEVEL={level!r}: expected one of {', '.join(LOG_LEVELS)}")
            return "INFO"
        return level

    def field_list(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.raw(name)
        if value is None or value == "":
            return default
        return tuple(part.strip() for part in value.split(",") if part.strip())

    def plain(self, spec: PlainSetting) -> Any:
        name, default = spec.name, spec.default
        if spec.kind == "text":
            return self.text(name, default)
        if spec.kind == "boolean":
            return self.boolean(name, default)
        if spec.kind == "integer":
            return self.integer(name, default, int(spec.low), spec.high)
        if spec.kind == "number":
            return self.number(name, default, spec.low, strictly_positive=spec.positive)
        if spec.kind == "path":
            return self.path(name, str(default))
        if spec.kind == "choice":
            return self.choice(name, default, spec.choices)
        if spec.kind == "field_list":
            return self.field_list(name, default)
        raise AssertionError(f"{name}: unknown kind {spec.kind!r}")

    def build(self) -> Settings:
        # USERNAME is an alias of APIUSER only when written in the .env file: Windows sets
        # USERNAME in every process environment to the logged-in account.
        apiuser = self.required("APIUSER", fallback=self.file_values.get("USERNAME", "").strip())
        ssl_cert = self.raw("SSL_CERT_PATH")
        ssl_cert_path = self.path("SSL_CERT_PATH", ssl_cert) if ssl_cert else None
        if ssl_cert_path is not None and not ssl_cert_path.is_file():
            self.problems.append(f"SSL_CERT_PATH={ssl_cert!r}: expected an existing PEM file")
        server_url = self.server_url()
        client_id = self.required("CLIENT_ID")
        org_code = self.required("ORG_CODE")
        bobo_zone = self.zone("BOBO_TIMEZONE", None)
        settings = Settings(
            athoc_server_url=server_url,
            client_id=client_id,
            client_secret=self.secret("CLIENT_SECRET", server_url, org_code, apiuser),
            apiuser=apiuser,
            password=self.secret("PASSWORD", server_url, org_code, apiuser),
            org_code=org_code,
            # the plain ones, after the secrets: problems are listed in this order
            **{spec.name.lower(): self.plain(spec) for spec in PLAIN_SETTINGS},
            ssl_cert_path=ssl_cert_path,
            http_proxy=self.proxy("HTTP_PROXY"),
            https_proxy=self.proxy("HTTPS_PROXY"),
            athoc_datetime_format=self.datetime_format(),
            log_level=self.log_level(),
            **self._notify_settings(server_url, org_code, apiuser),
            metrics_file=self.optional_path("METRICS_FILE"),
            bobo_timezone=bobo_zone or timezone.utc,
            athoc_timezone=self.zone("ATHOC_TIMEZONE", bobo_zone) if self.raw("ATHOC_TIMEZONE") else None,
            env_file=self.env_file,
            env_source=self.source,
            env_notes=env_file_notes(self.env_file, self.file_values) if self.env_file is not None else (),
        )
        if settings.csv_directory in (settings.processed_directory, settings.failed_files_directory):
            self.problems.append(
                "PROCESSED_DIRECTORY / FAILED_FILES_DIRECTORY: must differ from CSV_DIRECTORY "
                f"({settings.csv_directory})"
            )
        if self.problems:
            raise ConfigError(self.problems, source=self.source)
        return settings

    def _notify_settings(self, server_url: str, org_code: str, apiuser: str) -> _NotifySettings:
        """NOTIFY_* and SMTP_*: checked only as far as they matter (all of them once
        NOTIFY_EMAIL_TO is set); SMTP_PASSWORD is read like PASSWORD, credential store included."""
        recipients = self.field_list("NOTIFY_EMAIL_TO", ())
        for address in recipients:
            if not _is_address(address):
                self.problems.append(
                    f"NOTIFY_EMAIL_TO: {address!r} is not an e-mail address "
                    "(expected name@example.org, several separated by commas)"
                )
        sender = self.text("NOTIFY_EMAIL_FROM", "")
        if sender and not _is_address(sender):
            self.problems.append(
                f"NOTIFY_EMAIL_FROM={sender!r}: expected an e-mail address such as bobosync@example.org"
            )
        security = self.text("SMTP_SECURITY", "starttls").lower()
        if security not in SMTP_SECURITY_MODES:
            self.problems.append(f"SMTP_SECURITY={security!r}: expected one of {', '.join(SMTP_SECURITY_MODES)}")
            security = "starttls"
        username = self.text("SMTP_USERNAME", "")
        password = Secret("")
        if recipients:
            for name in ("NOTIFY_EMAIL_FROM", "SMTP_HOST"):
                if not self.raw(name):
                    self.problems.append(f"{name}: required when NOTIFY_EMAIL_TO is set")
            if username:
                password = self.secret("SMTP_PASSWORD", server_url, org_code, apiuser)
            elif self.raw("SMTP_PASSWORD") and (self.raw("SMTP_PASSWORD") or "").lower() != "keyring":
                self.problems.append(
                    "SMTP_PASSWORD: set, but SMTP_USERNAME is not (both, or neither for a relay without login)"
                )
        return _NotifySettings(
            notify_email_to=recipients,
            notify_email_from=sender,
            smtp_host=self.text("SMTP_HOST", ""),
            smtp_port=self.integer("SMTP_PORT", 465 if security == "ssl" else 25, 1, 65535),
            smtp_security=security,
            smtp_username=username,
            smtp_password=password,
            notify_repeat_hours=self.number("NOTIFY_REPEAT_HOURS", 4.0, 0),
        )


def _is_address(value: str) -> bool:
    """``name@domain``, optionally with a display name (``Control room <cr@example.org>``)."""
    address = parseaddr(value)[1]
    local, _, domain = address.rpartition("@")
    return bool(local and domain and " " not in address)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_unc(value: str) -> bool:
    """``\\\\server\\share\\x`` or ``//server/share/x``: absolute on Windows, kept as written."""
    return value.startswith("\\\\") or value.startswith("//")
