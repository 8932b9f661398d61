"""Taking secrets out of text: the one set of rules for log lines, exception messages, `check`
output and e-mails.

Two kinds of secret: values known by name (the password, the client secret, a token), replaced by
``***`` wherever they occur, and credentials written into URLs (``https://user:pass@host``, query
strings), removed by their shape. Values shorter than :data:`MIN_SECRET_LENGTH` are left alone
in running text: replacing every "a" of a one-letter password would garble each line and hide
nothing (a URL's credentials go by shape, whatever their length).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: Shorter known values are not searched for in running text.
MIN_SECRET_LENGTH = 4
#: What a removed secret is shown as.
MASK = "***"

_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_QUERY = re.compile(r"(https?://[^\s?'\"]*)\?[^\s'\"]*")


def redact_values(text: str, secrets: Iterable[str], min_length: int = MIN_SECRET_LENGTH) -> str:
    """``text`` with each of ``secrets`` (longest first, so that one inside another goes whole)
    replaced by :data:`MASK`; values shorter than ``min_length`` are kept."""
    for secret in sorted({s for s in secrets if s and len(s) >= min_length}, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_url_credentials(text: str) -> str:
    """``text`` with the ``user:password@`` part of every URL in it masked."""
    return _USERINFO.sub(MASK + "@", text)


def redact_urls(text: str) -> str:
    """``text`` with URL credentials masked and query strings (which may carry tokens) removed."""
    return _QUERY.sub(r"\1", redact_url_credentials(text))
