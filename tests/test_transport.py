"""bobosync.transport: TLS floor, session set-up, error mapping, retry policy.

Everything that involves HTTP runs against the real simulator over real HTTPS.
"""

from __future__ import annotations

import logging
import pickle
import select
import socket
import socketserver
import ssl
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import trustme
import urllib3

from bobosync import __version__
from bobosync.client import AtHocClient
from bobosync.errors import (
    AtHocHTTPError,
    AtHocRateLimited,
    AtHocResponseError,
    AtHocTimeout,
    AtHocTransportError,
)
from bobosync.settings import Settings
from bobosync.simulator import AtHocSimulator, make_users
from bobosync.transport import (
    TLS12HTTPAdapter,
    Transport,
    build_session,
    map_request_exception,
    parse_retry_after,
)

SEARCH = "users/search/basic"
PARAMS = {"Fields": "LOGIN_ID", "Limit": 5, "Offset": 0}


@pytest.fixture
def transport(sim_settings: Settings) -> Iterator[Transport]:
    with Transport(sim_settings) as t:
        yield t


def search_requests(sim: AtHocSimulator) -> int:
    return len(sim.requests_to("search/basic"))


# --------------------------------------------------------------------------- session / TLS


def test_adapter_pool_and_proxy_managers_require_tls12() -> None:
    adapter = TLS12HTTPAdapter()
    assert adapter.poolmanager.connection_pool_kw["ssl_minimum_version"] is ssl.TLSVersion.TLSv1_2
    for proxy in ("http://proxy.example:3128", "https://proxy.example:3129"):
        manager = adapter.proxy_manager_for(proxy)
        assert manager.connection_pool_kw["ssl_minimum_version"] is ssl.TLSVersion.TLSv1_2
    # requests rebuilds the pool manager when an adapter is unpickled: the floor must survive
    clone = pickle.loads(pickle.dumps(adapter))
    assert clone.poolmanager.connection_pool_kw["ssl_minimum_version"] is ssl.TLSVersion.TLSv1_2


def test_build_session_adapter_user_agent_proxies_verify(sim_settings: Settings) -> None:
    plain = build_session(sim_settings)
    assert isinstance(plain.get_adapter("https://athoc.example/"), TLS12HTTPAdapter)
    assert plain.headers["User-Agent"] == f"bobosync/{__version__}"
    assert plain.proxies == {}
    assert plain.verify == str(sim_settings.ssl_cert_path)
    proxied = build_session(replace(sim_settings, http_proxy="http://p:3128", https_proxy="http://q:3129"))
    assert proxied.proxies == {"http": "http://p:3128", "https": "http://q:3129"}
    assert build_session(replace(sim_settings, disable_ssl_verify=True)).verify is False


def test_user_agent_sent(transport: Transport, simulator: AtHocSimulator) -> None:
    # the simulator does not journal headers, so check what requests prepared
    response = transport.session.get(simulator.url + "/nothing", verify=transport.verify, timeout=5)
    assert response.request.headers["User-Agent"] == f"bobosync/{__version__}"


def test_explicit_verify_beats_requests_ca_bundle_env(
    sim_settings: Settings,
    simulator: AtHocSimulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A CA bundle in the environment that does NOT hold the simulator's CA: requests would
    # let it override a session-level verify; our explicit verify= must win.
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other))
    with Transport(sim_settings) as t:
        data = t.request_json("GET", SEARCH, params=PARAMS)
    assert len(data["Users"]) == 5
    # and the environment bundle really would have broken a session-level verify
    session = build_session(sim_settings)
    with pytest.raises(requests.exceptions.SSLError):
        session.get(simulator.url + "/x", timeout=5)


class _ConnectProxy(socketserver.ThreadingTCPServer):
    """A minimal HTTP CONNECT proxy that records the tunnels it opened."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.tunnels: list[str] = []
        super().__init__(("127.0.0.1", 0), _ConnectHandler)


class _ConnectHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        client: socket.socket = self.request
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                return
            head += chunk
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        server = self.server
        assert isinstance(server, _ConnectProxy)
        if method != "CONNECT":
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        server.tunnels.append(target)
        host, port = target.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)), timeout=10)
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        sockets = [client, upstream]
        try:
            while True:
                readable, _, _ = select.select(sockets, [], [], 10)
                if not readable:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is client else client).sendall(data)
        except OSError:
            return
        finally:
            upstream.close()


@pytest.fixture
def connect_proxy() -> Iterator[_ConnectProxy]:
    proxy = _ConnectProxy()
    thread = threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()


def test_https_proxy_from_settings_is_used(
    sim_settings: Settings, simulator: AtHocSimulator, connect_proxy: _ConnectProxy
) -> None:
    port = connect_proxy.server_address[1]
    settings = replace(sim_settings, https_proxy=f"http://127.0.0.1:{port}")
    with Transport(settings) as t:
        data = t.request_json("GET", SEARCH, params=PARAMS)
    assert len(data["Users"]) == 5
    sim_port = simulator.url.rsplit(":", 1)[1]
    assert connect_proxy.tunnels and all(x.endswith(":" + sim_port) for x in connect_proxy.tunnels)


def test_unreachable_proxy_is_a_transport_error(sim_settings: Settings) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
    settings = replace(sim_settings, https_proxy=f"http://user:proxypass@127.0.0.1:{free_port}")
    with Transport(settings) as t, pytest.raises(AtHocTransportError) as info:
        t.request_json("GET", SEARCH, params=PARAMS)
    assert "proxypass" not in str(info.value)
    assert t.request_count == 3  # the token request (the first one sent), tried 3 times


# --------------------------------------------------------------------------- TLS 1.1 server


def _tls11_server_context(certfile: Path, keyfile: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.load_cert_chain(str(certfile), str(keyfile))
    return context


def _probe_tls11(url: str) -> str:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client.set_ciphers("DEFAULT:@SECLEVEL=0")
        client.minimum_version = ssl.TLSVersion.TLSv1_1
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        client.wrap_socket(raw, server_hostname=host) as tls,
    ):
        return tls.version() or ""


@pytest.fixture
def tls11_simulator(tls_certs: Any) -> Iterator[AtHocSimulator]:
    certfile, keyfile = tls_certs.certfile, tls_certs.keyfile
    try:
        context = _tls11_server_context(certfile, keyfile)
    except (ssl.SSLError, ValueError) as exc:
        pytest.skip(f"this OpenSSL cannot build a TLS 1.1 server context: {exc}")
    sim = AtHocSimulator(make_users(3), ssl_context=context)
    sim.start()
    try:
        try:
            version = _probe_tls11(sim.url)
        except (ssl.SSLError, OSError) as exc:
            pytest.skip(f"this OpenSSL will not speak TLS 1.1 even at SECLEVEL=0: {exc}")
        if version != "TLSv1.1":
            pytest.skip(f"the TLS 1.1 server negotiated {version!r}")
        yield sim
    finally:
        sim.stop()


def test_tls11_only_server_is_refused(tls11_simulator: AtHocSimulator, sim_settings: Settings) -> None:
    settings = replace(sim_settings, athoc_server_url=tls11_simulator.url)
    with pytest.raises(AtHocTransportError) as info:
        AtHocClient(settings)
    assert "TLS" in str(info.value)
    assert not isinstance(info.value, AtHocTimeout)
    assert tls11_simulator.tokens_issued == 0
    assert tls11_simulator.journal == []


def test_tls11_only_server_is_refused_through_proxy(
    tls11_simulator: AtHocSimulator, sim_settings: Settings, connect_proxy: _ConnectProxy
) -> None:
    port = connect_proxy.server_address[1]
    settings = replace(
        sim_settings,
        athoc_server_url=tls11_simulator.url,
        https_proxy=f"http://127.0.0.1:{port}",
        disable_ssl_verify=True,  # only the protocol version can make it fail
    )
    with pytest.raises(AtHocTransportError) as info:
        AtHocClient(settings)
    assert "TLS" in str(info.value)
    assert connect_proxy.tunnels  # it did go through the proxy
    assert tls11_simulator.journal == []


def test_certificate_failure_is_not_retried(sim_settings: Settings, simulator: AtHocSimulator) -> None:
    settings = replace(sim_settings, ssl_cert_path=None)
    with Transport(settings) as t, pytest.raises(AtHocTransportError) as info:
        t.request_json("GET", SEARCH, params=PARAMS)
    assert "certificate" in str(info.value).lower()
    assert info.value.retryable is False
    assert t.request_count == 1
    assert simulator.journal == []


# --------------------------------------------------------------------------- error mapping


@pytest.mark.parametrize(
    ("exc", "expected", "words"),
    [
        (requests.exceptions.ConnectTimeout("connect timed out"), AtHocTimeout, "timed out"),
        (requests.exceptions.ReadTimeout("read timed out"), AtHocTimeout, "timed out"),
        (
            requests.ConnectionError(
                urllib3.exceptions.ReadTimeoutError(None, "/x", "slow")  # type: ignore[arg-type]
            ),
            AtHocTimeout,
            "timed out",
        ),
        (
            requests.exceptions.SSLError("certificate verify failed"),
            AtHocTransportError,
            "TLS/certificate",
        ),
        (requests.exceptions.ProxyError("Cannot connect to proxy"), AtHocTransportError, "proxy"),
        (requests.ConnectionError("Connection refused"), AtHocTransportError, "connection failed"),
        (requests.exceptions.ChunkedEncodingError("cut"), AtHocTransportError, "cut short"),
        (requests.exceptions.ContentDecodingError("gzip"), AtHocTransportError, "decoded"),
        (requests.exceptions.InvalidURL("bad url"), AtHocTransportError, "InvalidURL"),
    ],
)
def test_map_request_exception(exc: requests.RequestException, expected: type, words: str) -> None:
    error = map_request_exception(exc, "GET", "/api/v2/orgs/X/users/search/basic?Criteria=a")
    assert type(error) is expected
    assert words in str(error)
    assert str(error).startswith("GET /api/v2/orgs/X/users/search/basic:")
    assert "Criteria" not in str(error)
    assert error.method == "GET" and error.path == "/api/v2/orgs/X/users/search/basic"


def test_map_request_exception_redacts_urls_and_secrets() -> None:
    exc = requests.exceptions.ProxyError(
        "Cannot connect to proxy http://bob:hunter2@proxy:3128 for https://athoc/api?token=abc with secret s3cr3t"
    )
    text = str(map_request_exception(exc, "POST", "https://athoc/x?y=1", ("s3cr3t",)))
    assert "hunter2" not in text and "token=abc" not in text and "s3cr3t" not in text
    assert text.startswith("POST /x:")


def test_parse_retry_after() -> None:
    now = datetime(2025, 6, 18, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("") is None
    assert parse_retry_after(None) is None


# --------------------------------------------------------------------------- retries


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_retryable_status_is_retried(status: int, transport: Transport, simulator: AtHocSimulator) -> None:
    simulator.fail_next(2, status, path_contains="search/basic")
    data = transport.request_json("GET", SEARCH, params=PARAMS)
    assert len(data["Users"]) == 5
    assert [e.status for e in simulator.requests_to("search/basic")] == [status, status, 200]
    assert transport.request_count == 4  # token + 3 tries


@pytest.mark.parametrize(("status", "cls"), [(503, AtHocHTTPError), (429, AtHocRateLimited)])
def test_retries_exhausted(
    status: int, cls: type[AtHocHTTPError], transport: Transport, simulator: AtHocSimulator
) -> None:
    simulator.fail_next(5, status, path_contains="search/basic")
    with pytest.raises(cls) as info:
        transport.request_json("GET", SEARCH, params=PARAMS)
    assert type(info.value) is cls
    assert info.value.status == status and info.value.retryable
    assert search_requests(simulator) == 3  # HTTP_RETRY_ATTEMPTS


@pytest.mark.parametrize("status", [400, 403, 404, 409, 413])
def test_other_4xx_not_retried(status: int, transport: Transport, simulator: AtHocSimulator) -> None:
    simulator.fail_next(1, status, path_contains="search/basic")
    with pytest.raises(AtHocHTTPError) as info:
        transport.request_json("GET", SEARCH, params=PARAMS)
    assert info.value.status == status and not info.value.retryable
    assert search_requests(simulator) == 1
    assert "?" not in str(info.value) and "Fields" not in str(info.value)


def test_retry_after_is_honoured(transport: Transport, simulator: AtHocSimulator) -> None:
    transport.auth.ensure_token()
    simulator.fail_next(1, 429, retry_after=1, path_contains="search/basic")
    started = time.monotonic()
    transport.request_json("GET", SEARCH, params=PARAMS)
    assert time.monotonic() - started >= 1.0
    assert search_requests(simulator) == 2


def test_retry_after_is_capped_and_backoff_used_otherwise(sim_settings: Settings, simulator: AtHocSimulator) -> None:
    sleeps: list[float] = []
    settings = replace(sim_settings, http_retry_backoff_seconds=0.5)
    with Transport(settings, sleep=sleeps.append) as t:
        simulator.fail_next(1, 503, retry_after=3600, path_contains="search/basic")
        simulator.fail_next(1, 503, path_contains="search/basic")
        t.request_json("GET", SEARCH, params=PARAMS)
    assert sleeps[0] == 120.0
    assert 1.0 <= sleeps[1] <= 1.5  # second try: 0.5 * 2 plus up to 50 % jitter
    assert search_requests(simulator) == 3


def test_retry_logged_at_warning(
    transport: Transport, simulator: AtHocSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    simulator.fail_next(1, 503, path_contains="search/basic")
    with caplog.at_level(logging.DEBUG, logger="bobosync"):
        transport.request_json("GET", SEARCH, params=PARAMS)
    warnings_ = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings_) == 1
    text = warnings_[0].getMessage()
    assert warnings_[0].name == "bobosync.transport"
    assert "GET /api/v2/orgs/SIMORG/users/search/basic" in text
    assert "HTTP 503" in text and "attempt 1/3" in text and "retrying in" in text
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("/users/search/basic -> 200 in" in m and " ms" in m for m in debug)


def test_dropped_connection_is_retried(transport: Transport, simulator: AtHocSimulator) -> None:
    simulator.fail_next(1, drop=True, path_contains="search/basic")
    data = transport.request_json("GET", SEARCH, params=PARAMS)
    assert len(data["Users"]) == 5
    assert [e.status for e in simulator.requests_to("search/basic")] == [0, 200]


def test_always_dropped_is_transport_error(transport: Transport, simulator: AtHocSimulator) -> None:
    simulator.fail_next(3, drop=True, path_contains="search/basic")
    with pytest.raises(AtHocTransportError) as info:
        transport.request_json("GET", SEARCH, params=PARAMS)
    assert not isinstance(info.value, AtHocTimeout)
    assert search_requests(simulator) == 3


def test_timeout_retried_then_succeeds(sim_settings: Settings, simulator: AtHocSimulator) -> None:
    settings = replace(sim_settings, request_timeout_seconds=0.3)
    simulator.fail_next(1, 200, delay=1.0, path_contains="search/basic")
    with Transport(settings) as t:
        data = t.request_json("GET", SEARCH, params=PARAMS)
        assert len(data["Users"]) == 5
        assert t.request_count == 3  # token, timed out try, good try


def test_timeout_exhausted_is_athoc_timeout(sim_settings: Settings, simulator: AtHocSimulator) -> None:
    settings = replace(sim_settings, request_timeout_seconds=0.3)
    simulator.fail_next(3, 200, delay=1.0, path_contains="search/basic")
    with Transport(settings) as t:
        started = time.monotonic()
        with pytest.raises(AtHocTimeout) as info:
            t.request_json("GET", SEARCH, params=PARAMS)
        assert t.request_count == 4
    assert 0.9 <= time.monotonic() - started < 3.0
    assert info.value.retryable
    assert "/users/search/basic" in str(info.value)


def test_token_endpoint_down_is_not_retried_twice_over(transport: Transport, simulator: AtHocSimulator) -> None:
    simulator.fail_next(10, 503, path_contains="connect/token")
    with pytest.raises(AtHocHTTPError) as info:
        transport.request_json("GET", SEARCH, params=PARAMS)
    assert info.value.status == 503
    assert len(simulator.requests_to("connect/token")) == 3  # not 3 x 3
    assert search_requests(simulator) == 0


# --------------------------------------------------------------------------- bodies


def test_non_json_200_is_response_error_not_retried(transport: Transport, simulator: AtHocSimulator) -> None:
    simulator.fail_next(
        1,
        200,
        body="<html><body>Login page</body></html>",
        content_type="text/html",
        path_contains="search/basic",
    )
    with pytest.raises(AtHocResponseError) as info:
        transport.request_json("GET", SEARCH, params=PARAMS)
    assert "not JSON" in str(info.value) and "text/html" in str(info.value)
    assert search_requests(simulator) == 1


def test_html_error_body_reduced_to_text(transport: Transport, simulator: AtHocSimulator) -> None:
    page = (
        "<html><head><title>Bad</title><style>h1 { color: red }</style></head>\n<body>"
        "<h1>502   Bad Gateway</h1>\n\n<p>nginx &amp; friends</p><script>var x=1;</script>"
        "</body></html>"
    )
    simulator.fail_next(3, 502, body=page, content_type="text/html", path_contains="search/basic")
    with pytest.raises(AtHocHTTPError) as info:
        transport.request_json("GET", SEARCH, params=PARAMS)
    assert info.value.excerpt == "502 Bad Gateway nginx & friends"
    assert "502 Bad Gateway nginx & friends" in str(info.value)


@pytest.mark.parametrize(
    ("body", "excerpt"),
    [
        ('{"Message": "The request is invalid.", "Other": 1}', "The request is invalid."),
        ('{"error": "invalid_request", "error_description": "nope"}', "invalid_request: nope"),
        ('{"unexpected": true}', '{"unexpected": true}'),
        ("plain\n\n  text   error", "plain text error"),
    ],
)
def test_error_excerpt(body: str, excerpt: str, transport: Transport, simulator: AtHocSimulator) -> None:
    simulator.fail_next(1, 400, body=body, path_contains="search/basic")
    with pytest.raises(AtHocHTTPError) as info:
        transport.request_json("GET", SEARCH, params=PARAMS)
    assert info.value.excerpt == excerpt


def test_long_error_excerpt_is_capped(transport: Transport, simulator: AtHocSimulator) -> None:
    simulator.fail_next(1, 404, body="x " * 5000, content_type="text/plain", path_contains="search/basic")
    with pytest.raises(AtHocHTTPError) as info:
        transport.request_json("GET", SEARCH, params=PARAMS)
    assert 100 < len(info.value.excerpt) <= 200
    assert len(str(info.value)) < 400


def test_request_count_counts_every_request(transport: Transport, simulator: AtHocSimulator) -> None:
    simulator.fail_next(1, 503, path_contains="search/basic")
    transport.request_json("GET", SEARCH, params=PARAMS)
    transport.request_json("GET", SEARCH, params=PARAMS)
    assert transport.request_count == len(simulator.journal) == 4
