"""A real SMTP server on loopback for the e-mail tests: aiosmtpd in a thread.

``MailServer(security="starttls", certs=tls_certs, login=("user", "pw"))`` listens on a free
loopback port with plain SMTP (``none``), STARTTLS offered (``starttls``) or implicit TLS
(``ssl``), optionally requiring a login. ``messages`` holds every mail accepted (parsed);
``refuse_data`` makes it answer the DATA command with an error instead.
"""

from __future__ import annotations

import socket
import ssl
import threading
from email import message_from_bytes, policy
from email.message import Message
from typing import Any, Optional

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.conftest import TLSCerts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Handler:
    def __init__(self, server: MailServer) -> None:
        self.server = server

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        if self.server.refuse_data:
            return self.server.refuse_data
        content = envelope.original_content or b""
        with self.server.lock:
            self.server.messages.append(message_from_bytes(content, policy=policy.default))
            self.server.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


class MailServer:
    def __init__(
        self,
        *,
        security: str = "none",
        certs: Optional[TLSCerts] = None,
        login: Optional[tuple[str, str]] = None,
    ) -> None:
        self.security = security
        self.port = free_port()
        self.login = login
        self.messages: list[Message] = []
        self.envelopes: list[tuple[Optional[str], list[str]]] = []
        self.logins: list[str] = []
        self.refuse_data: Optional[str] = None
        self.lock = threading.Lock()
        kwargs: dict[str, Any] = {}
        if security != "none":
            assert certs is not None, "TLS needs the test certificates"
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(certs.certfile), str(certs.keyfile))
            kwargs["ssl_context" if security == "ssl" else "tls_context"] = context
        if login is not None:
            # auth_require_tls: aiosmtpd sees only STARTTLS, not implicit TLS, as TLS.
            kwargs.update(authenticator=self._authenticate, auth_required=True, auth_require_tls=security == "starttls")
        else:
            kwargs["auth_require_tls"] = False
        self.controller = Controller(
            _Handler(self), hostname="127.0.0.1", port=self.port, server_hostname="localhost", **kwargs
        )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and self.login is not None:
            user, password = auth_data.login.decode(), auth_data.password.decode()
            with self.lock:
                self.logins.append(user)
            if (user, password) == self.login:
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def settings(self) -> dict[str, str]:
        """The .env settings that point bobosync at this server."""
        values = {
            "SMTP_HOST": "localhost" if self.security != "none" else "127.0.0.1",
            "SMTP_PORT": str(self.port),
            "SMTP_SECURITY": self.security,
            "NOTIFY_EMAIL_TO": "control-room@force.example, it-duty@force.example",
            "NOTIFY_EMAIL_FROM": "bobosync@force.example",
        }
        if self.login is not None:
            values.update(SMTP_USERNAME=self.login[0], SMTP_PASSWORD=self.login[1])
        return values

    def __enter__(self) -> MailServer:
        self.controller.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.controller.stop()
