"""Step 1: the configuration (settings, the .env file read, unknown and overridden names)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Optional

from dotenv import dotenv_values

from ..errors import (
    ConfigError,
)
from ..settings import (
    describe_env_source,
    find_env_file,
    known_setting_names,
    load_settings,
    repeated_setting_names,
    unknown_setting_names,
)
from .base import CheckerBase
from .leftovers import ORIGINAL_ONLY_SETTINGS, original_leftovers
from .results import CheckResult, fail, ok, warn
from .tls import (
    default_ca_bundle,
)


class ConfigurationChecks(CheckerBase):
    # -- 1. configuration -----------------------------------------------------------------

    def check_configuration(self) -> Iterator[CheckResult]:
        name = "configuration"
        try:
            path = find_env_file(self.env_file, self.environ)
        except OSError as exc:  # Path.cwd() gone
            yield fail(name, f"cannot look for the .env file: {exc}", "run bobosync from an existing folder")
            return
        source = self._env_source(path)
        file_values: dict[str, Optional[str]] = {}
        if path is not None and path.is_file():
            file_values = dict(dotenv_values(path))
        try:
            self.settings = load_settings(self.env_file, self.environ)
        except ConfigError as exc:
            where = (
                f"in {path} (or in the environment, which wins over the file)"
                if path is not None
                else "in the environment or a .env file"
            )
            for problem in exc.problems:
                yield fail(name, problem, f"correct it {where}")
            yield from original_leftovers(file_values, path)  # an original value refused: say what changed
            return
        settings = self.settings
        yield ok(name, f"valid; {source}")
        yield from original_leftovers(file_values, path)
        yield from self._unknown_settings(path, file_values)
        yield from self._overridden_settings(path, file_values)
        if settings.disable_ssl_verify:
            yield warn(
                "DISABLE_SSL_VERIFY",
                "true: the AtHoc server's certificate is NOT checked (anyone in the network path "
                "could pose as AtHoc and read the password)",
                "set DISABLE_SSL_VERIFY=false; if the certificate is not trusted, put the CA "
                "certificate (PEM) in a file and set SSL_CERT_PATH to it",
            )
        else:
            trust = (
                f"SSL_CERT_PATH {settings.ssl_cert_path}"
                if settings.ssl_cert_path is not None
                else f"default CA bundle {default_ca_bundle()}"
            )
            yield ok("DISABLE_SSL_VERIFY", f"false: certificates are verified against {trust}")

    def _env_source(self, path: Optional[Path]) -> str:
        return describe_env_source(path, self.env_file, self.environ)

    def _unknown_settings(
        self, path: Optional[Path], file_values: Mapping[str, Optional[str]]
    ) -> Iterator[CheckResult]:
        name = "unknown settings"
        if path is None:
            return
        unknown = [n for n in unknown_setting_names(file_values) if n not in ORIGINAL_ONLY_SETTINGS]
        if unknown:
            yield warn(
                name,
                f"{len(unknown)} setting(s) in {path.name} that bobosync does not use: " + ", ".join(unknown),
                "correct the spelling (setting names are case-sensitive) or remove them; see "
                "the settings table in the README",
            )
        else:
            yield ok(name, f"none: every setting in {path.name} is one bobosync reads")
        repeated = repeated_setting_names(path)
        if repeated:
            yield warn(
                "repeated settings",
                f"written more than once in {path.name}: "
                + ", ".join(f"{key} ({count} times)" for key, count in repeated.items())
                + "; only the last one is used",
                "keep one line per setting, so that the value you read is the value bobosync uses",
            )

    def _overridden_settings(
        self, path: Optional[Path], file_values: Mapping[str, Optional[str]]
    ) -> Iterator[CheckResult]:
        name = "environment overrides"
        if path is None:
            return
        known = known_setting_names() - {"USERNAME", "BOBO_ENV_FILE"}
        differ = sorted(
            key
            for key, value in file_values.items()
            if key in known and key in self.environ and (self.environ[key] or "").strip() != (value or "").strip()
        )
        if differ:
            yield warn(
                name,
                f"the process environment sets {', '.join(differ)} to another value than "
                f"{path.name}, and the environment wins",
                "remove them from the environment (or from the .env file) so that there is one place to look",
            )
        else:
            yield ok(name, f"none: no setting of {path.name} is overridden by the environment")
