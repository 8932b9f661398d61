"""TLS probing for ``bobosync check``: the connection the client would make, opened by hand.

The check needs what requests hides: the negotiated TLS version, the cipher and the server's
certificate even when it is not trusted (the :mod:`ssl` module decodes only verified
certificates, so the raw DER is read with :mod:`cryptography`). A proxy is crossed with
:mod:`http.client`'s CONNECT tunnel, the same way requests' urllib3 does it.
"""

from __future__ import annotations

import base64
import http.client
import logging
import os
import socket
import ssl
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Optional
from urllib.parse import unquote, urlsplit

import requests.utils
from cryptography import x509
from cryptography.x509.oid import NameOID

from ..settings import Settings
from ..transport import TLS_MINIMUM_VERSION, proxies_setting

log = logging.getLogger(__name__)

#: The name attributes shown for a certificate's subject and issuer, in this order.
_NAME_ATTRIBUTES = (
    (NameOID.COMMON_NAME, "CN"),
    (NameOID.ORGANIZATION_NAME, "O"),
    (NameOID.ORGANIZATIONAL_UNIT_NAME, "OU"),
    (NameOID.COUNTRY_NAME, "C"),
)


@dataclass(frozen=True)
class CertificateInfo:
    subject: str
    issuer: str
    not_after: datetime  # UTC, aware

    def days_left(self, now: Optional[datetime] = None) -> int:
        now = now or datetime.now(timezone.utc)
        return (self.not_after - now) // timedelta(days=1)

    def describe(self) -> str:
        return f"subject {self.subject}, issuer {self.issuer}, expires {self.not_after:%Y-%m-%d}"


@dataclass(frozen=True)
class TLSHandshake:
    version: str
    cipher: str
    certificate: Optional[CertificateInfo]


def effective_proxy(settings: Settings) -> Optional[str]:
    """The proxy requests will use for ATHOC_SERVER_URL: the settings' first, then the
    environment's (honouring NO_PROXY), exactly as the client's session merges them."""
    url = settings.athoc_server_url
    proxies: dict[str, str] = dict(requests.utils.get_environ_proxies(url))
    proxies.update(proxies_setting(settings))
    return requests.utils.select_proxy(url, proxies)


def default_ca_bundle() -> str:
    """The CA bundle requests uses when ``verify=True`` (REQUESTS_CA_BUNDLE wins)."""
    return (
        os.environ.get("REQUESTS_CA_BUNDLE")
        or os.environ.get("CURL_CA_BUNDLE")
        or requests.utils.DEFAULT_CA_BUNDLE_PATH
    )


def client_tls_context(settings: Settings) -> tuple[ssl.SSLContext, str]:
    """An SSL context with the client's trust and TLS floor, and a description of the trust."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = TLS_MINIMUM_VERSION
    if settings.disable_ssl_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context, "nothing (DISABLE_SSL_VERIFY=true)"
    if settings.ssl_cert_path is not None:
        context.load_verify_locations(cafile=str(settings.ssl_cert_path))
        return context, f"SSL_CERT_PATH {settings.ssl_cert_path}"
    bundle = default_ca_bundle()
    if Path(bundle).is_dir():
        context.load_verify_locations(capath=bundle)
    else:
        context.load_verify_locations(cafile=bundle)
    return context, f"the default CA bundle {bundle}"


def unverified_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = TLS_MINIMUM_VERSION
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def open_connection(host: str, port: int, proxy: Optional[str], timeout: float) -> socket.socket:
    """A TCP connection to ``host:port``, directly or through an HTTP CONNECT tunnel."""
    if proxy is None:
        return socket.create_connection((host, port), timeout=timeout)
    parts = urlsplit(proxy)
    if parts.scheme != "http" or parts.hostname is None:
        raise OSError(f"cannot open a tunnel through a {parts.scheme}:// proxy")
    headers = {}
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    tunnel = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    tunnel.set_tunnel(host, port, headers=headers)
    try:
        tunnel.connect()
    except OSError as exc:
        tunnel.close()
        # http.client says "Tunnel connection failed: 407 Proxy Authentication Required".
        raise OSError(f"the proxy refused the tunnel to {host}:{port}: {exc}") from None
    except http.client.HTTPException as exc:
        tunnel.close()
        raise OSError(f"the proxy gave no usable answer to CONNECT: {exc or type(exc).__name__}") from None
    sock = tunnel.sock
    assert sock is not None  # connect() succeeded
    tunnel.sock = None  # the socket is ours now: closing the connection object must not close it
    return sock


def tls_handshake(host: str, port: int, proxy: Optional[str], context: ssl.SSLContext, timeout: float) -> TLSHandshake:
    """Connect, handshake, read version, cipher and certificate, close. No data is sent."""
    raw = open_connection(host, port, proxy, timeout)
    try:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
            cipher = tls.cipher()
            version = tls.version() or "?"
    finally:
        raw.close()
    certificate: Optional[CertificateInfo] = None
    if der:
        try:
            certificate = decode_certificate(der)
        except ValueError:
            log.debug("certificate of %s could not be decoded", host, exc_info=True)
    return TLSHandshake(version, cipher[0] if cipher else "?", certificate)


def legacy_version(host: str, port: int, proxy: Optional[str], timeout: float) -> Optional[str]:
    """The TLS version the server negotiates when anything is allowed, if older than 1.2."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
            context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        handshake = tls_handshake(host, port, proxy, context, timeout)
    except (ssl.SSLError, OSError, ValueError):
        return None
    if handshake.version in ("TLSv1", "TLSv1.1", "SSLv3"):
        return handshake.version
    return None


def verify_message(exc: ssl.SSLCertVerificationError) -> str:
    return str(exc.verify_message or exc.reason or exc)


def _name(name: x509.Name) -> str:
    parts = [
        f"{label}={attribute.value if isinstance(attribute.value, str) else attribute.value.decode('latin-1')}"
        for oid, label in _NAME_ATTRIBUTES
        for attribute in name.get_attributes_for_oid(oid)
    ]
    return ", ".join(parts) or "(empty)"


def decode_certificate(der: bytes) -> CertificateInfo:
    """Subject, issuer (CN, O, OU, C) and expiry of a DER X.509 certificate.

    Raises ValueError for anything that is not a well-formed certificate.
    """
    certificate = x509.load_der_x509_certificate(der)
    try:
        not_after = certificate.not_valid_after_utc
    except AttributeError:  # cryptography < 42
        not_after = certificate.not_valid_after.replace(tzinfo=timezone.utc)
    return CertificateInfo(
        subject=_name(certificate.subject),
        issuer=_name(certificate.issuer),
        not_after=not_after,
    )
