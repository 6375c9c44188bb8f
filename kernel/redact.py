"""Secrets never reach a log line: a formatter that redacts every line the process writes.

Redacted: the values of secrets the process knows (API key, database and Redis passwords), the value of
any `token=`-like query parameter (browsers put the WebSocket token there, and uvicorn logs the path of
every WebSocket it accepts), the password of any `scheme://user:password@host` URL, and the value of an
`X-API-Key` or `Authorization` header, and anything shaped like a user's own key (`wab_<id>_<secret>`:
its secret part). The whole formatted line is redacted, tracebacks included, so a
secret inside an exception message is caught too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import quote, unquote, urlsplit

REDACTED = "[redacted]"

# A query parameter whose value is a credential: ?token=..., &api_key=..., &access_token=...
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&;](?:token|access_token|api[_-]?key|key|password|secret)=)[^&;\s\"'#]+", re.IGNORECASE
)
# scheme://user:password@host (user may be empty: redis://:password@host).
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/?#@\s]*:)[^@\s/]+(?=@)", re.IGNORECASE)
# Header dumps: "X-API-Key: ...", "'x-api-key': '...'", "Authorization: Bearer ...".
_HEADER_SECRET = re.compile(
    r"(?P<key>\b(?:x-api-key|authorization)['\"]?\s*[:=]\s*['\"]?(?:bearer\s+)?)[^\s'\",}]+", re.IGNORECASE
)

# A user's own key (api.user_keys): the id may show, the secret never.
_USER_KEY = re.compile(r"(?P<head>\bwab_[0-9a-f]{16}_)[A-Za-z0-9_-]+")


def url_password(url: str | None) -> str | None:
    """The password in `url` (as written and percent-decoded are both secrets), or None."""
    if not url:
        return None
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return password or None


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every known secret and every credential-shaped value replaced by REDACTED."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    text = _QUERY_SECRET.sub(rf"\g<key>{REDACTED}", text)
    text = _URL_PASSWORD.sub(rf"\g<head>{REDACTED}", text)
    text = _USER_KEY.sub(rf"\g<head>{REDACTED}", text)
    return _HEADER_SECRET.sub(rf"\g<key>{REDACTED}", text)


class RedactingFormatter(logging.Formatter):
    """A Formatter whose every line (message, arguments, traceback) goes through `redact`."""

    def __init__(
        self, fmt: str | None, secrets: Iterable[str] = (), *, inner: logging.Formatter | None = None
    ) -> None:
        super().__init__(fmt)
        self._inner = inner  # a handler's own formatter, kept (see `hide`)
        self._secrets: tuple[str, ...] = ()
        self.add_secrets(secrets)

    def add_secrets(self, secrets: Iterable[str | None]) -> None:
        """Also redact these literal values (each in its raw, percent-encoded and decoded forms)."""
        known = set(self._secrets)
        for secret in secrets:
            if secret and len(secret) >= 4:  # a 1-3 character "secret" would blank out ordinary words
                known.update({secret, quote(secret, safe=""), unquote(secret)})
        # Longest first, so that a secret containing another is replaced whole.
        self._secrets = tuple(sorted(known, key=len, reverse=True))

    def format(self, record: logging.LogRecord) -> str:
        text = self._inner.format(record) if self._inner is not None else super().format(record)
        return redact(text, self._secrets)


def install(fmt: str, secrets: Iterable[str | None] = ()) -> None:
    """Give every handler of the root logger a RedactingFormatter with `fmt` (after basicConfig)."""
    for handler in logging.getLogger().handlers:
        current = handler.formatter
        if isinstance(current, RedactingFormatter):
            current.add_secrets(secrets)
        else:
            formatter = RedactingFormatter(fmt)
            formatter.add_secrets(secrets)
            handler.setFormatter(formatter)


def hide(secrets: Iterable[str | None]) -> None:
    """Also redact these values from every line the root logger's handlers write from now on, each
    handler keeping its own format (a session process learns its proxy's password when it loads it)."""
    for handler in logging.getLogger().handlers:
        current = handler.formatter
        if not isinstance(current, RedactingFormatter):
            current = RedactingFormatter(None, inner=current or logging.Formatter())
            handler.setFormatter(current)
        current.add_secrets(secrets)
