"""Fixtures shared by the whole test suite: TLS material, a running AtHoc simulator over
HTTPS, and a complete bobosync configuration pointing at it."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from hypothesis import settings as hypothesis_settings

from bobosync.settings import Settings, load_settings
from bobosync.simulator import SIM_CREDENTIALS, AtHocSimulator, make_users

# Property tests are seeded by default, so that CI gives the same answer every time;
# BOBOSYNC_HYPOTHESIS_PROFILE=random explores new examples on each run.
hypothesis_settings.register_profile("seeded", derandomize=True)
hypothesis_settings.register_profile("random", derandomize=False)
hypothesis_settings.load_profile(os.environ.get("BOBOSYNC_HYPOTHESIS_PROFILE", "seeded"))


@dataclass(frozen=True)
class TLSCerts:
    ca_pem: Path  # the CA bundle to trust (SSL_CERT_PATH / verify=)
    certfile: Path  # server certificate chain for 127.0.0.1 and localhost
    keyfile: Path  # its private key

    def simulator(self, users: int = 50) -> AtHocSimulator:
        """An HTTPS simulator (not started) with ``make_users(users)``, serving these certs."""
        return AtHocSimulator(users=make_users(users), certfile=self.certfile, keyfile=self.keyfile)


@pytest.fixture(scope="session")
def tls_certs(tmp_path_factory: pytest.TempPathFactory) -> TLSCerts:
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_pem = folder / "ca.pem"
    certfile = folder / "server-cert.pem"
    keyfile = folder / "server-key.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    certfile.write_bytes(b"".join(blob.bytes() for blob in server_cert.cert_chain_pems))
    server_cert.private_key_pem.write_to_path(str(keyfile))
    return TLSCerts(ca_pem=ca_pem, certfile=certfile, keyfile=keyfile)


@pytest.fixture
def simulator(tls_certs: TLSCerts) -> Iterator[AtHocSimulator]:
    sim = tls_certs.simulator(50)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def sim_env(simulator: AtHocSimulator, tls_certs: TLSCerts, tmp_path: Path) -> dict[str, str]:
    csv_directory = tmp_path / "crown_files"
    csv_directory.mkdir(exist_ok=True)
    env = {
        "ATHOC_SERVER_URL": simulator.url,
        "CLIENT_ID": SIM_CREDENTIALS["client_id"],
        "CLIENT_SECRET": SIM_CREDENTIALS["client_secret"],
        "APIUSER": SIM_CREDENTIALS["username"],
        "PASSWORD": SIM_CREDENTIALS["password"],
        "ORG_CODE": SIM_CREDENTIALS["org_code"],
        "SSL_CERT_PATH": str(tls_certs.ca_pem),
        "CSV_DIRECTORY": str(csv_directory),
        "PROCESSED_DIRECTORY": str(tmp_path / "processed_files"),
        "FAILED_FILES_DIRECTORY": str(tmp_path / "failed_files"),
        "LOG_DIRECTORY": str(tmp_path / "logs"),
        "DB_PATH": str(tmp_path / "bobo_mapping.db"),
        "FILE_SETTLE_SECONDS": "0",
        "HTTP_RETRY_ATTEMPTS": "3",
        "HTTP_RETRY_BACKOFF_SECONDS": "0.01",
        "REQUEST_TIMEOUT_SECONDS": "5",
        "AUTO_CLEANUP_HOURS": "24",
    }
    (tmp_path / ".env").write_text("".join(f"{key}={value}\n" for key, value in env.items()), encoding="utf-8")
    return env


@pytest.fixture
def sim_settings(sim_env: dict[str, str], tmp_path: Path) -> Settings:
    return load_settings(env_file=tmp_path / ".env", environ={})


@pytest.fixture
def propagate_logs() -> Iterator[None]:
    """Let bobosync's log records reach pytest's ``caplog`` (the package logger does not
    propagate by default); use with ``pytestmark = pytest.mark.usefixtures("propagate_logs")``."""
    logger = logging.getLogger("bobosync")
    saved = logger.propagate
    logger.propagate = True
    yield
    logger.propagate = saved
