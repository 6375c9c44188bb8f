"""Incoming media fetched from WhatsApp's media servers and decrypted as it arrives, into an anonymous file.

neonize 0.5.2's download hands Python the whole file at once, so the adapter does whatsmeow's download
itself (`download.go`: `Download`, `downloadAndDecrypt`), a chunk at a time:
- where: the sub-message's `URL`, unless it is empty, on web.whatsapp.net (whatsmeow skips those too) or
  not an https URL on an allowed host; else `https://mmg.whatsapp.net` + `directPath` with whatsmeow's
  query (`hash`, `mms-type`). Neither → `MediaNotAvailable`, and no request. There is no fallback to
  neonize's download: whatsmeow's `Download` uses exactly these two fields and fails (`ErrNoURLPresent`)
  without them, so Go could not fetch what this cannot.
- keys: HKDF-SHA256(mediaKey, info by message class as whatsmeow's `classToMediaType`, 112 bytes) →
  iv [0:16], AES key [16:48], MAC key [48:80].
- the file: AES-256-CBC (PKCS7) ciphertext, then the first 10 bytes of HMAC-SHA256(MAC key, iv ‖ ciphertext).
- before the file is handed out: SHA-256 of the whole download (`fileEncSHA256`), the MAC, the padding,
  the length (`fileLength`) and SHA-256 of the plaintext (`fileSHA256`). A failure raises `ClientError`
  (502) and closes the file, which has no name (`tempfile.TemporaryFile`): nothing is left on disk.
Memory: one chunk in flight (`chunk_bytes`) plus what the HTTP client and the cipher buffer, whatever the
size. Time: connecting and each read wait at most `connect_s` / `read_s`, the whole download `total_s`
(below the API's wait for a stream's head, `api.media_stream.HEAD_TIMEOUT_S`); past either,
`ClientTimeout` (504). The server: 404/410 → `MediaNotAvailable`; unreachable, 429 or 5xx →
`ServiceUnavailable` (503 + Retry-After); anything else but 200 → `ClientError`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import ssl
import tempfile
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from actors.media.bodies import file_chunks
from actors.media.limits import check_size
from actors.ports import MediaBody
from kernel.errors import ClientError, ClientTimeout, MediaNotAvailable, ServiceUnavailable

log = logging.getLogger(__name__)

MAC_BYTES = 10
BLOCK_BYTES = 16
CHUNK_BYTES = 64 * 1024
DEFAULT_HOST = "mmg.whatsapp.net"
WHATSAPP_HOSTS = ("whatsapp.net",)
# whatsmeow's MediaType values (the HKDF info) by protobuf class, and the mms-type of each.
IMAGE, VIDEO, AUDIO, DOCUMENT = (
    "WhatsApp Image Keys",
    "WhatsApp Video Keys",
    "WhatsApp Audio Keys",
    "WhatsApp Document Keys",
)
HISTORY, APP_STATE = "WhatsApp History Keys", "WhatsApp App State Keys"
APP_INFO = {
    "ImageMessage": IMAGE,
    "AudioMessage": AUDIO,
    "VideoMessage": VIDEO,  # also ptvMessage (a VideoMessage)
    "DocumentMessage": DOCUMENT,
    "StickerMessage": IMAGE,
    "StickerMetadata": IMAGE,
    "HistorySyncNotification": HISTORY,
    "ExternalBlobReference": APP_STATE,
}
MMS_TYPE = {
    IMAGE: "image",
    AUDIO: "audio",
    VIDEO: "video",
    DOCUMENT: "document",
    HISTORY: "md-msg-hist",
    APP_STATE: "md-app-state",
}
_HEADERS = {"Origin": "https://web.whatsapp.com", "Referer": "https://web.whatsapp.com/"}


@dataclass(frozen=True, slots=True)
class MediaKeys:
    iv: bytes
    cipher_key: bytes
    mac_key: bytes


def media_keys(media_key: bytes, app_info: str) -> MediaKeys:
    """whatsmeow's `getMediaKeys`: the 112-byte HKDF-SHA256 expansion of the message's media key."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=112, salt=None, info=app_info.encode())
    expanded = hkdf.derive(media_key)
    return MediaKeys(expanded[:16], expanded[16:48], expanded[48:80])


def app_info_of(sub: Any) -> str:
    """The HKDF info for a media sub-message (by its protobuf class); MediaNotAvailable for other classes."""
    info = APP_INFO.get(sub.DESCRIPTOR.name)
    if info is None:
        raise MediaNotAvailable(f"{sub.DESCRIPTOR.name} carries no downloadable media")
    return info


@dataclass(frozen=True, slots=True)
class MediaFetcher:
    """How the adapter reaches WhatsApp's media servers. The defaults are production's; tests point
    `hosts`/`default_host` at a local HTTPS server and `verify` at its certificate."""

    hosts: tuple[str, ...] = WHATSAPP_HOSTS  # a message's URL must be on one of these (or a subdomain)
    default_host: str = DEFAULT_HOST  # where a directPath is fetched from
    verify: ssl.SSLContext | bool = True
    connect_s: float = 10.0
    read_s: float = 30.0  # a server that sends nothing for this long has stalled
    total_s: float = 140.0
    chunk_bytes: int = CHUNK_BYTES
    tmpdir: str | None = None  # None: TMPDIR
    # The number's proxy (socks5:// or http://, with its password), or None: the environment's, as Go does.
    proxy: str | None = field(default=None, repr=False)

    def http_client(self, **options: Any) -> httpx.AsyncClient:
        """An HTTP client to WhatsApp's media servers: its certificate check, timeouts and proxy."""
        timeout = httpx.Timeout(self.read_s, connect=self.connect_s)
        return httpx.AsyncClient(verify=self.verify, timeout=timeout, proxy=self.proxy, **options)

    def url_for(self, sub: Any, app_info: str) -> str:
        """The URL whatsmeow would fetch `sub` from (see the module docstring); MediaNotAvailable if none."""
        url = str(getattr(sub, "URL", "") or "")
        if url and not url.startswith("https://web.whatsapp.net") and self._allowed(url):
            return url
        path = str(sub.directPath or "")
        if path.startswith("/"):
            enc_hash = base64.urlsafe_b64encode(bytes(sub.fileEncSHA256)).decode()
            joiner = "&" if "?" in path else "?"
            query = f"hash={enc_hash}&mms-type={MMS_TYPE[app_info]}&__wa-mms="
            return f"https://{self.default_host}{path}{joiner}{query}"
        raise MediaNotAvailable("This message's media has no address on WhatsApp's servers")

    def allows(self, url: str) -> bool:
        """Whether `url` is an https URL on WhatsApp's media hosts (the only ones ever fetched)."""
        return self._allowed(url)

    def _allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        return parts.scheme == "https" and any(host == h or host.endswith("." + h) for h in self.hosts)

    async def fetch(self, sub: Any, max_bytes: int, *, label: str = "-") -> MediaBody:
        """The decrypted, verified media of `sub` (an ImageMessage, DocumentMessage, ...), read from disk."""
        if not sub.mediaKey:
            raise MediaNotAvailable("This message's media has no key")
        app_info = app_info_of(sub)
        url = self.url_for(sub, app_info)
        host = urlsplit(url).hostname
        file = tempfile.TemporaryFile(dir=self.tmpdir)  # noqa: SIM115 (closed here or by file_chunks)
        try:
            sink = _Decrypting(media_keys(bytes(sub.mediaKey), app_info), file, max_bytes)
            try:
                async with asyncio.timeout(self.total_s):
                    await self._download(url, sink)
            except TimeoutError:
                raise ClientTimeout(f"the media download took over {self.total_s:.0f} s") from None
            except httpx.TimeoutException as err:
                raise ClientTimeout("WhatsApp's media server stopped answering") from err
            except httpx.TransportError as err:
                what = type(err).__name__
                raise ServiceUnavailable(f"WhatsApp's media server cannot be reached ({what})") from err
            except httpx.HTTPError as err:  # e.g. a body that cannot be decoded
                raise ClientError(f"the media download failed ({type(err).__name__})") from err
            size = sink.finish(bytes(sub.fileEncSHA256), bytes(sub.fileSHA256), int(sub.fileLength or 0))
            file.seek(0)
        except BaseException as err:
            file.close()
            what = type(err).__name__
            log.warning("session %s: media download from %s failed: %s %s", label, host, what, err)
            raise
        log.info("session %s: media downloaded from %s, %d bytes verified", label, host, size)
        return MediaBody(size, file_chunks(file))

    async def _download(self, url: str, sink: _Decrypting) -> None:
        async with (
            self.http_client() as http,
            http.stream("GET", url, headers=_HEADERS) as response,
        ):
            status = response.status_code
            if status in (404, 410):
                raise MediaNotAvailable("WhatsApp no longer has this media")
            if status == 429 or status >= 500:
                raise ServiceUnavailable(f"WhatsApp's media server answered {status}")
            if status != 200:
                raise ClientError(f"WhatsApp's media server answered {status}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit():
                sink.check_encrypted_size(int(declared))
            async for chunk in response.aiter_bytes(self.chunk_bytes):
                sink.feed(chunk)


class _Decrypting:
    """Hashes, authenticates and decrypts the encrypted file as it arrives; writes the plaintext to `file`.

    The last `MAC_BYTES` seen are held back: they are the MAC, not ciphertext, once the stream ends.
    Each 64 KiB chunk costs ~0.3 ms (measured; AES and SHA-256 in OpenSSL), so it runs on the loop.
    """

    def __init__(self, keys: MediaKeys, file: IO[bytes], max_bytes: int) -> None:
        self._keys = keys
        self._file = file
        self._max_bytes = max_bytes
        self._enc_sha = hashlib.sha256()
        self._mac = hmac.new(keys.mac_key, keys.iv, hashlib.sha256)
        self._decryptor = Cipher(algorithms.AES(keys.cipher_key), modes.CBC(keys.iv)).decryptor()
        self._unpadder = padding.PKCS7(128).unpadder()
        self._plain_sha = hashlib.sha256()
        self._tail = b""
        self._received = 0
        self._written = 0

    def check_encrypted_size(self, n: int) -> None:
        """MediaTooLarge if `n` encrypted bytes must hold more than `max_bytes` of plaintext."""
        check_size(n - BLOCK_BYTES - MAC_BYTES, self._max_bytes)  # at least one byte of padding

    def feed(self, chunk: bytes) -> None:
        self._received += len(chunk)
        self.check_encrypted_size(self._received)
        self._enc_sha.update(chunk)
        data = memoryview(self._tail + chunk)
        body, self._tail = data[:-MAC_BYTES], bytes(data[-MAC_BYTES:])
        if body:
            self._mac.update(body)
            self._write(self._unpadder.update(self._decryptor.update(body)))

    def finish(self, file_enc_sha256: bytes, file_sha256: bytes, file_length: int) -> int:
        """The plaintext's size once every check has passed; ClientError naming the first that failed."""
        if self._received <= MAC_BYTES:
            raise ClientError("the media file is too short")
        if len(file_enc_sha256) == 32 and not hmac.compare_digest(self._enc_sha.digest(), file_enc_sha256):
            raise ClientError("the media file failed its integrity check (fileEncSHA256)")
        if not hmac.compare_digest(self._mac.digest()[:MAC_BYTES], self._tail):
            raise ClientError("the media file failed its integrity check (MAC)")
        try:
            self._write(self._unpadder.update(self._decryptor.finalize()) + self._unpadder.finalize())
        except ValueError as err:
            raise ClientError("the media file failed to decrypt (padding)") from err
        check_size(self._written, self._max_bytes)
        if file_length > 0 and self._written != file_length:
            raise ClientError(f"the media file is {self._written} bytes, its message said {file_length}")
        if len(file_sha256) == 32 and not hmac.compare_digest(self._plain_sha.digest(), file_sha256):
            raise ClientError("the media file failed its integrity check (fileSHA256)")
        self._file.flush()
        return self._written

    def _write(self, plain: bytes) -> None:
        if plain:
            self._plain_sha.update(plain)
            self._file.write(plain)
            self._written += len(plain)
