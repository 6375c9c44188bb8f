"""A Redis URL as the sessions' publisher connects with it (actors/publisher.py), parsed once.

URLs: `redis://[[user]:password@]host[:port][/db]`, `rediss://...` (TLS, verified against the system's
CAs or `?ssl_ca_certs=/path/ca.pem`, not at all with `?ssl_cert_reqs=none`),
`unix://[[user]:password@]/path/to/socket[?db=N]`; `?password=` works too. Other query parameters are
ignored. Settings validates `REDIS_URL` with it, so a bad URL is refused at start, not in each session.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_PORT = 6379


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str | None
    port: int
    path: str | None
    username: str | None
    password: str | None
    tls: ssl.SSLContext | None
    db: int = 0

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        password = unquote(parts.password) if parts.password else next(iter(query.get("password", [])), None)
        username = unquote(parts.username) if parts.username else None
        if parts.scheme == "unix":
            if not parts.path:
                raise ValueError("a unix:// Redis URL needs a socket path")
            return cls(None, 0, parts.path, username, password, None, _db(query.get("db", ["0"])[0]))
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r}")
        tls = None
        if parts.scheme == "rediss":
            cafile = next(iter(query.get("ssl_ca_certs", [])), None)
            try:
                tls = ssl.create_default_context(cafile=cafile)
            except OSError as err:
                raise ValueError(f"ssl_ca_certs {cafile}: {err.strerror or err}") from err
            if (query.get("ssl_cert_reqs") or [""])[0].lower() in ("none", "cert_none"):
                tls.check_hostname = False
                tls.verify_mode = ssl.CERT_NONE
        db = _db(parts.path.strip("/") or query.get("db", ["0"])[0])
        return cls(
            parts.hostname or "localhost", parts.port or DEFAULT_PORT, None, username, password, tls, db
        )


def _db(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"the Redis database must be a number, not {text!r}")
    return int(text)
