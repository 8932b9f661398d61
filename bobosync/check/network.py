"""Steps 5-6: proxy, DNS, TCP, and TLS with the client's trust."""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterator
from typing import Optional
from urllib.parse import urlsplit

from ..redaction import redact_url_credentials
from ..transport import proxies_setting
from .base import CERT_WARN_DAYS, CheckerBase, os_error
from .results import MAX_EXAMPLES, CheckResult, fail, ok, skip, warn
from .tls import (
    TLSHandshake,
    client_tls_context,
    effective_proxy,
    legacy_version,
    tls_handshake,
    unverified_context,
    verify_message,
)


class NetworkChecks(CheckerBase):
    # -- 5. network -----------------------------------------------------------------------

    def check_network(self) -> Iterator[CheckResult]:
        settings = self._settings()
        parts = urlsplit(settings.athoc_server_url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        timeout = self._timeout()
        self._proxy = effective_proxy(settings)
        if self._proxy is None:
            yield ok("proxy", f"none: bobosync connects to {host}:{port} directly")
            target_host, target_port = host, port
            role = ""
        else:
            shown = redact_url_credentials(self._proxy)
            origin = (
                "HTTPS_PROXY/HTTP_PROXY setting"
                if proxies_setting(settings)
                else "the environment (https_proxy/all_proxy)"
            )
            proxy_parts = urlsplit(self._proxy)
            yield ok("proxy", f"{shown} (from {origin}); the proxy resolves and connects to {host}")
            if proxy_parts.scheme != "http" or proxy_parts.hostname is None:
                self._tls_probe_possible = False  # the tunnel through it is not built here
            target_host = proxy_parts.hostname or ""
            target_port = proxy_parts.port or (
                443 if proxy_parts.scheme == "https" else 1080 if proxy_parts.scheme.startswith("socks") else 80
            )
            role = "proxy "

        fix_host = (
            "check the proxy URL in HTTPS_PROXY"
            if role
            else "check the host name in ATHOC_SERVER_URL; if this machine reaches the internet "
            "through a proxy, set HTTPS_PROXY"
        )
        try:
            addresses = _resolve(target_host, target_port)
        except OSError as exc:
            yield fail("DNS", f"{role}{target_host} cannot be resolved: {os_error(exc)}", fix_host)
            return
        if _is_ip_address(target_host):
            yield ok("DNS", f"{role}{target_host} is an IP address: nothing to look up")
        else:
            more = f" (+{len(addresses) - MAX_EXAMPLES} more)" if len(addresses) > MAX_EXAMPLES else ""
            yield ok("DNS", f"{role}{target_host} -> {', '.join(addresses[:MAX_EXAMPLES])}{more}")

        started = time.monotonic()
        try:
            with socket.create_connection((target_host, target_port), timeout=timeout):
                pass
        except OSError as exc:
            yield fail(
                "TCP",
                f"cannot connect to {role}{target_host}:{target_port}: {os_error(exc)}",
                (
                    f"check the port in {'HTTPS_PROXY' if role else 'ATHOC_SERVER_URL'} and that the "
                    f"firewall allows this machine to open connections to {target_host}:{target_port}"
                ),
            )
            return
        elapsed = (time.monotonic() - started) * 1000
        yield ok("TCP", f"connected to {role}{target_host}:{target_port} in {elapsed:.0f} ms")

    # -- 6. TLS ---------------------------------------------------------------------------

    def check_tls(self) -> Iterator[CheckResult]:
        settings = self._settings()
        parts = urlsplit(settings.athoc_server_url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if parts.scheme != "https":
            yield warn(
                "TLS",
                f"none: {settings.athoc_server_url} is plain http (allowed for a loopback test "
                "server such as the simulator only)",
                "use the https:// URL of the real AtHoc server",
            )
            return
        if not self._tls_probe_possible:
            yield skip(
                "TLS",
                f"not probed through the {urlsplit(self._proxy or '').scheme} proxy; "
                "the authentication check below covers the connection",
            )
            return
        timeout = self._timeout()
        context, trust = client_tls_context(settings)
        try:
            handshake = tls_handshake(host, port, self._proxy, context, timeout)
        except ssl.SSLCertVerificationError as exc:
            yield from self._untrusted(host, port, timeout, trust, exc)
            return
        except ssl.SSLError as exc:
            yield self._tls_refused(host, port, timeout, exc)
            yield skip("certificate", "not checked: no TLS connection")
            return
        except OSError as exc:
            yield fail(
                "TLS",
                f"handshake with {host}:{port} failed: {os_error(exc)}",
                "check that ATHOC_SERVER_URL is the AtHoc server's https:// address (and port), and the proxy settings",
            )
            return
        yield self._tls_version_result(handshake)
        yield self._certificate_result(handshake, host, trust, verified=not settings.disable_ssl_verify)

    def _tls_version_result(self, handshake: TLSHandshake) -> CheckResult:
        return ok("TLS", f"{handshake.version} ({handshake.cipher}); bobosync accepts TLS 1.2 or later")

    def _certificate_result(self, handshake: TLSHandshake, host: str, trust: str, *, verified: bool) -> CheckResult:
        name = "certificate"
        info = handshake.certificate
        if info is None:
            described = "the server's certificate could not be decoded"
            days_left: Optional[int] = None
        else:
            days_left = info.days_left()
            described = f"{info.describe()} ({days_left} days left)"
        if not verified:
            return warn(
                name,
                f"{described}; NOT verified (DISABLE_SSL_VERIFY=true){self._would_verify(host)}",
                "set DISABLE_SSL_VERIFY=false (and SSL_CERT_PATH to the issuing CA's PEM file if "
                "it is not trusted by default)",
            )
        if days_left is not None and days_left < CERT_WARN_DAYS:
            return warn(
                name,
                f"{described}; trusted via {trust}; expires in under {CERT_WARN_DAYS} days",
                "ask the AtHoc server's administrators to renew the certificate in time (bobosync "
                "stops working the moment it expires)",
            )
        return ok(name, f"{described}; trusted via {trust}; valid for {host}")

    def _would_verify(self, host: str) -> str:
        """With verification disabled: would the certificate pass if it were enabled?"""
        settings = dataclasses.replace(self._settings(), disable_ssl_verify=False)
        context, trust = client_tls_context(settings)
        port = urlsplit(settings.athoc_server_url).port or 443
        try:
            tls_handshake(host, port, self._proxy, context, self._timeout())
        except ssl.SSLCertVerificationError as exc:
            return f"; it would NOT pass verification against {trust}: {verify_message(exc)}"
        except (ssl.SSLError, OSError):
            return ""
        return f"; it WOULD pass verification against {trust}"

    def _untrusted(
        self, host: str, port: int, timeout: float, trust: str, exc: ssl.SSLCertVerificationError
    ) -> Iterator[CheckResult]:
        reason = verify_message(exc)
        insecure = unverified_context()
        described = ""
        try:
            handshake: Optional[TLSHandshake] = tls_handshake(host, port, self._proxy, insecure, timeout)
        except (ssl.SSLError, OSError):
            handshake = None
        if handshake is not None:
            yield self._tls_version_result(handshake)
            if handshake.certificate is not None:
                described = f" ({handshake.certificate.describe()})"
        else:
            yield skip("TLS", "version not known: no handshake succeeded")
        lowered = reason.lower()
        if "expired" in lowered:
            fix = "the certificate has expired: ask the AtHoc server's administrators to renew it"
        elif "hostname" in lowered or "not valid for" in lowered or "ip address mismatch" in lowered:
            fix = (
                f"use the host name the certificate is issued for in ATHOC_SERVER_URL (not {host}), "
                "or ask for a certificate that names it"
            )
        else:
            fix = (
                "get the certificate of the CA that issued it (the issuer above; your IT team or "
                "the proxy's administrators have it), save it as a PEM file and set SSL_CERT_PATH to "
                "it - do not set DISABLE_SSL_VERIFY=true"
            )
        yield fail("certificate", f"not trusted: {reason}{described}; trust used: {trust}", fix)

    def _tls_refused(self, host: str, port: int, timeout: float, exc: ssl.SSLError) -> CheckResult:
        legacy = legacy_version(host, port, self._proxy, timeout)
        if legacy is not None:
            return fail(
                "TLS",
                f"{host}:{port} offers only {legacy}; bobosync requires TLS 1.2 or later",
                "ask the AtHoc server's (or the proxy's) administrators to enable TLS 1.2 or 1.3",
            )
        return fail(
            "TLS",
            f"handshake with {host}:{port} failed: {exc.reason or exc}",
            "check that ATHOC_SERVER_URL is the AtHoc server's https:// address and that the "
            "server offers TLS 1.2 or later",
        )


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
