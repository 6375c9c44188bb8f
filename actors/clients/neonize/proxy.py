"""A number's proxy on neonize: whatsmeow dials WhatsApp (and uploads media) through it, our own media
and picture downloads (`media_fetch`, `profiles`) too, and a dial it breaks says why.

neonize 0.5.2's `connect(proxy_settings)` hands `ProxySettings(proxy_address=url)` to Go, which calls
whatsmeow's `Client.SetProxyAddress(url)` before `Connect()`: `http` → `SetProxy(http.ProxyURL(u))`,
`socks5` → `SetSOCKSProxy(proxy.FromURL(u, ...))` (golang.org/x/net/proxy, user/password from the URL),
for the websocket and media alike (`no_websocket`, `no_media` false). Without a proxy whatsmeow reads
HTTPS_PROXY from the environment, as before. whatsmeow only takes a proxy before `Connect()`: a changed
proxy is a fresh session process (the session recycles itself, `SessionCore.use_proxy`).

What a broken proxy looks like from Go (the error `Neonize()` returns, measured with tests.proxykit):
socks5 `socks connect tcp <proxy>-><target>: dial tcp <proxy>: connect: connection refused` (unreachable),
`... username/password authentication failed` / `no acceptable authentication methods` (credentials),
`... unknown error not allowed by ruleset` (it would not connect us on); http `proxyconnect tcp: dial tcp
...: connection refused` (unreachable) or `Proxy Authentication Required` (credentials).
"""

from __future__ import annotations

from dataclasses import replace
from http import HTTPStatus
from typing import Any

from actors.clients.neonize.media_fetch import MediaFetcher
from kernel.domain import Reason
from kernel.proxy import ProxySettings

# Go's net/http turns a CONNECT the proxy answered with anything but 200 into its status text alone.
_STATUS_TEXTS = {status.phrase.lower() for status in HTTPStatus}
_AUTH = ("authentication", "proxy authentication required")


def settings(lib: Any, proxy: ProxySettings | None) -> Any | None:
    """neonize's ProxySettings for `connect()` (None: whatsmeow's default, the environment's proxy)."""
    if proxy is None:
        return None
    return lib.client.ProxySettings(proxy_address=proxy.url)


def fetcher(media: MediaFetcher, proxy: ProxySettings | None) -> MediaFetcher:
    """`media` with its requests sent through `proxy` (unchanged without one)."""
    return media if proxy is None else replace(media, proxy=proxy.url)


def dial_reason(error: BaseException | str, proxy: ProxySettings | None) -> Reason | None:
    """The proxy reason a failed dial gives, or None when it is not the proxy's doing (or none is set).

    Only an error of the proxy stage counts (Go names it: `socks connect`, `proxyconnect`, or an http
    proxy's bare status text): past the proxy, WhatsApp's own refusals keep their reasons.
    """
    if proxy is None:
        return None
    text = str(error).lower()
    last = text.rsplit(": ", 1)[-1].strip()
    if proxy.scheme == "http" and last in _STATUS_TEXTS:
        return Reason.PROXY_AUTH_FAILED if last == "proxy authentication required" else Reason.PROXY_REFUSED
    socks, http = "socks connect" in text, "proxyconnect" in text
    if not (socks or http):
        return None
    if any(word in text for word in _AUTH):
        return Reason.PROXY_AUTH_FAILED
    if http or "dial tcp" in text:  # the dial to the proxy itself failed: refused, no such host, timeout
        return Reason.PROXY_UNREACHABLE
    return Reason.PROXY_REFUSED
