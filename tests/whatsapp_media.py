"""WhatsApp's media encryption done independently of the adapter, and a local HTTPS server to serve it.

`seal` encrypts as WhatsApp stores media (whatsmeow's `download.go` is the reference): HKDF-SHA256 of
the 32-byte media key with the kind's info string to 112 bytes (iv, AES key, MAC key), AES-256-CBC with
PKCS7, then the first 10 bytes of HMAC-SHA256(MAC key, iv ‖ ciphertext). `MediaServer` serves files over
HTTPS with a self-signed certificate (`self_signed`), and can misbehave by path: `/status/<code>`,
`/silent/...` (never answers), `/stall/...` (64 KiB, then nothing), `/trickle/...` (a byte per 0.1 s),
`/gzip/...` (a false Content-Encoding).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import http.server
import ipaddress
import os
import ssl
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import NameOID


def hkdf_sha256(key: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 with an empty salt."""
    prk = hmac.new(b"\0" * 32, key, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out, counter = out + block, counter + 1
    return out[:length]


@dataclass
class Sealed:
    media_key: bytes
    file_sha256: bytes
    file_enc_sha256: bytes
    length: int


def seal(chunks: Iterable[bytes], app_info: str, out: Path) -> Sealed:
    """Encrypt plaintext chunks to `out` as WhatsApp stores media: ciphertext ‖ HMAC[:10]."""
    media_key = os.urandom(32)
    keys = hkdf_sha256(media_key, app_info.encode(), 112)
    iv, cipher_key, mac_key = keys[:16], keys[16:48], keys[48:80]
    encryptor = Cipher(algorithms.AES(cipher_key), modes.CBC(iv)).encryptor()
    mac, plain_sha, enc_sha = hmac.new(mac_key, iv, hashlib.sha256), hashlib.sha256(), hashlib.sha256()
    pending, length = b"", 0
    with out.open("wb") as f:

        def emit(ciphertext: bytes) -> None:
            mac.update(ciphertext)
            enc_sha.update(ciphertext)
            f.write(ciphertext)

        for chunk in chunks:
            plain_sha.update(chunk)
            length += len(chunk)
            pending += chunk
            cut = len(pending) - len(pending) % 16
            emit(encryptor.update(pending[:cut]))
            pending = pending[cut:]
        pad = 16 - len(pending)
        emit(encryptor.update(pending + bytes([pad]) * pad) + encryptor.finalize())
        tag = mac.digest()[:10]
        enc_sha.update(tag)
        f.write(tag)
    return Sealed(media_key, plain_sha.digest(), enc_sha.digest(), length)


# ---------------------------------------------------------------------- a local HTTPS media server


@dataclass
class MediaServer:
    root: Path
    port: int = 0
    requests: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return f"https://localhost:{self.port}{path}"


def make_handler(server: MediaServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            server.requests.append(self.path)
            try:
                self.answer()
            except (ConnectionError, ssl.SSLError):
                pass  # the client gave up (a refused or timed-out download): what these tests cause

        def answer(self) -> None:
            parts = urlsplit(self.path).path.strip("/").split("/")
            kind, name = parts[0], parts[-1]
            if kind == "status":
                self.send_response(int(name))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if kind == "silent":  # accepts the request, never answers
                server.release.wait(30)
                return
            path = server.root / name
            self.send_response(200)
            self.send_header("Content-Length", str(path.stat().st_size))
            if kind == "gzip":  # says gzip, is not
                self.send_header("Content-Encoding", "gzip")
            self.end_headers()
            with path.open("rb") as f:
                if kind == "stall":  # the first 64 KiB, then nothing
                    self.wfile.write(f.read(64 * 1024))
                    self.wfile.flush()
                    server.release.wait(30)
                    return
                while chunk := f.read(1 if kind == "trickle" else 64 * 1024):
                    self.wfile.write(chunk)
                    if kind == "trickle":  # every read arrives in time; the whole never does
                        self.wfile.flush()
                        if server.release.wait(0.1):
                            return

    return Handler


@contextmanager
def serving(folder: Path, tls: tuple[Path, Path]) -> Iterator[MediaServer]:
    """A MediaServer over HTTPS (the `self_signed` certificate) on a free port, serving `folder`."""
    server = MediaServer(folder)
    server.root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(server))
    httpd.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    server.port = httpd.server_address[1]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.release.set()
        httpd.shutdown()
        httpd.server_close()


def self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path
