"""Upload limits at every edge, through the real server: each edge gets its documented error (413
`media_too_large` / `request_too_large`, 415 `unsupported_audio`, 422 `invalid_request`), never a 500,
and the API process holds no more than a fraction of what a client sends.

The API runs with MAX_MEDIA_BYTES = 1 MiB and the clients send up to 48 MiB, so a path that buffered a
body would show as tens of MiB of Python allocations (tracemalloc sees the API's thread: it runs in
this process). Voice-note conversion runs in a subprocess of its own for the decompression bomb, whose
peak RSS and CPU time are measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import random
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from fractions import Fraction

import av
import pytest

from actors.media import MAX_VOICE_SECONDS, to_voice_note
from kernel.errors import UnsupportedAudio
from tests import media_samples
from tests.apikit import Stack, api_stack, new_user
from tests.raykit import eventually, local_ray

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]

LIMIT = 1024 * 1024
MB = 1024 * 1024
# Python allocations the API may make while refusing a body many times this size.
HELD_AT_MOST = 6 * MB


def silent_opus_webm(seconds: float) -> bytes:
    """A live WebM (no declared duration, as browsers record) of silent 60 ms Opus packets: a few MB
    that decode to `seconds` of audio."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=48000, options={"frame_duration": "60"})
        stream.layout = "mono"
        for i in range(10):
            frame = av.AudioFrame(format="s16", layout="mono", samples=2880)
            frame.planes[0].update(bytes(2880 * 2))
            frame.sample_rate, frame.pts, frame.time_base = 48000, i * 2880, Fraction(1, 48000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    buffer.seek(0)
    with av.open(buffer) as source:
        silent = [bytes(p) for p in source.demux(source.streams.audio[0]) if p.size][5]
    bomb = io.BytesIO()
    with av.open(bomb, "w", format="webm", options={"live": "1"}) as out:
        stream = out.add_stream("libopus", rate=48000)
        stream.layout = "mono"
        for i in range(int(seconds / 0.06)):
            packet = av.Packet(silent)
            packet.pts = packet.dts = i * 2880
            packet.time_base, packet.stream = Fraction(1, 48000), stream
            out.mux(packet)
    return bomb.getvalue()


def wav_declaring_hours() -> bytes:
    """One second of WAV whose header claims a data chunk of about 3.4 hours."""
    data = bytearray(media_samples.audio("wav", 1.0))
    at = data.index(b"data")
    data[at + 4 : at + 8] = (0x7FFF0000).to_bytes(4, "little")
    data[4:8] = (0x7FFF0000 + at).to_bytes(4, "little")
    return bytes(data)


def multichannel_wav(layout: str) -> bytes:
    channels = av.AudioLayout(layout).nb_channels
    pcm = media_samples.pcm(1.0, media_samples.PCM_RATE, channels)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=media_samples.PCM_RATE)
        stream.layout = layout
        frame = av.AudioFrame(format="s16", layout=layout, samples=len(pcm) // (2 * channels))
        frame.planes[0].update(pcm)
        frame.sample_rate = media_samples.PCM_RATE
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buffer.getvalue()


# --- the conversion itself ------------------------------------------------------------------------------

_CONVERT = """
import resource, sys
from kernel.errors import UnsupportedAudio
from actors.media import to_voice_note
data = sys.stdin.buffer.read()
try:
    to_voice_note(data)
    outcome = "converted"
except UnsupportedAudio as err:
    outcome = err.code + ": " + err.message
usage = resource.getrusage(resource.RUSAGE_SELF)
print(outcome, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime, sep="\\n")
"""


def convert_apart(data: bytes) -> tuple[str, int, float]:
    """Convert in a fresh interpreter: the outcome, its peak RSS (bytes) and CPU seconds."""
    done = subprocess.run(
        [sys.executable, "-c", _CONVERT], input=data, capture_output=True, check=True, timeout=200
    )
    outcome, peak, cpu = done.stdout.decode().splitlines()[-3:]
    return outcome, int(peak), float(cpu)


def test_a_small_file_that_decodes_to_hours_is_refused_early_and_small() -> None:
    bomb = silent_opus_webm(3 * 3600)
    assert len(bomb) < 4 * MB
    baseline = convert_apart(media_samples.audio("webm-opus", 2.0))
    assert baseline[0] == "converted"
    outcome, peak, cpu = convert_apart(bomb)
    assert outcome == f"unsupported_audio: The audio is longer than {MAX_VOICE_SECONDS} seconds"
    assert peak - baseline[1] < 32 * MB, f"peak RSS {peak // MB} MiB against {baseline[1] // MB} MiB"
    # The full conversion of the capped 30 minutes costs about 40 s of CPU here; counting decoded
    # samples first costs about 1 s. CPU time, not wall clock: other processes do not inflate it.
    assert cpu < baseline[2] + 15, f"{cpu:.1f} s of CPU to refuse it"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (multichannel_wav("5.1"), "The audio has 6 channels; at most 2 are accepted"),
        (multichannel_wav("2.1"), "The audio has 3 channels; at most 2 are accepted"),
    ],
    ids=["5.1", "2.1"],
)
def test_audio_over_the_limits_is_unsupported_audio(data: bytes, message: str) -> None:
    with pytest.raises(UnsupportedAudio) as refused:
        to_voice_note(data)
    assert refused.value.message == message


def test_mono_and_stereo_are_converted_and_a_lying_header_counts_for_nothing() -> None:
    for layout in ("mono", "stereo"):
        assert to_voice_note(multichannel_wav(layout)).seconds == 1
    assert to_voice_note(wav_declaring_hours()).seconds == 1, "judged by what it holds"


# --- through HTTP -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    with local_ray(), api_stack(postgres_server, redis_server, max_media_bytes=LIMIT) as running:
        yield running


@pytest.fixture(scope="module")
async def paired(stack: Stack) -> tuple[str, str]:
    user = new_user()
    async with stack.client(user) as client:
        sid = (await client.post("/sessions", json={})).json()["id"]

        async def status() -> str:
            found: str = (await client.get(f"/sessions/{sid}/status")).json()["status"]
            return found

        await eventually(status, lambda s: s == "qr_ready", 30)
        phone = f"+1415559{random.randint(1000, 9999)}"
        assert (
            await client.post(f"/simulator/sessions/{sid}/scan", json={"phone": phone})
        ).status_code == 200
        await eventually(status, lambda s: s == "connected", 30)
    return user, sid


async def exchange(stack: Stack, head: bytes, chunks: Iterator[bytes]) -> tuple[int, bytes]:
    """Send a request by hand while reading the answer; the client may still be sending when the server
    answers and hangs up (as a browser would be). The status and the JSON body of the first answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", int(stack.base_url.rsplit(":", 1)[1]))

    async def send() -> None:
        writer.write(head)
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()

    sending = asyncio.create_task(send())
    try:
        response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
        lines = response.decode().split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 60)
        return int(lines[0].split()[1]), body
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await sending
        writer.transport.abort()  # the server may have hung up on a client still sending


def _head(stack: Stack, user: str, path: str, content_type: str, framing: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: t\r\nX-API-Key: {stack.api_key}\r\nX-User-Id: {user}\r\n"
        f"Content-Type: {content_type}\r\n{framing}\r\n\r\n"
    ).encode()


PREAMBLE = (
    b'--b\r\nContent-Disposition: form-data; name="to"\r\n\r\n+15551112222\r\n'
    b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.wav"\r\n\r\n'
)
PIECE = b"\0" * MB


def _pieces(total_mb: int) -> Iterator[bytes]:
    yield PREAMBLE
    for _ in range(total_mb):
        yield PIECE


def _chunked(inner: Iterator[bytes]) -> Iterator[bytes]:
    for piece in inner:
        yield b"%x\r\n%s\r\n" % (len(piece), piece)
    yield b"0\r\n\r\n"


async def test_bodies_over_the_limit_are_refused_at_every_edge_without_being_held(
    stack: Stack, paired: tuple[str, str]
) -> None:
    user, sid = paired
    form = "multipart/form-data; boundary=b"
    cases: list[tuple[str, bytes, Iterator[bytes], int, str]] = []
    for route in ("media", "audio"):
        path = f"/sessions/{sid}/send/{route}"
        cases += [
            # Declared far above the limit: answered from the headers, nothing read.
            # (Far above, the server hangs up after answering: a client that waits for `100 Continue`
            # or reads while sending sees the 413, one that blindly sends it all may see a reset.)
            (f"{route}: declared 1 TB", _head(stack, user, path, form, f"Content-Length: {10**12}"),
             iter(()), 413, "media_too_large"),
            (f"{route}: declared 1 TB, expects 100-continue",
             _head(stack, user, path, form, f"Content-Length: {10**12}\r\nExpect: 100-continue"),
             iter(()), 413, "media_too_large"),
            # Declared over the limit, and sent in full: read and dropped, then answered.
            (f"{route}: declared and sent 3 MiB",
             _head(stack, user, path, form, f"Content-Length: {len(PREAMBLE) + 3 * MB}"),
             _pieces(3), 413, "media_too_large"),
            # Chunked: no length at all, cut off once the file passes the limit.
            (f"{route}: chunked 48 MiB", _head(stack, user, path, form, "Transfer-Encoding: chunked"),
             _chunked(_pieces(48)), 413, "media_too_large"),
        ]  # fmt: skip
    text = f"/sessions/{sid}/send/text"
    cases += [
        ("text: declared 1 TB", _head(stack, user, text, "application/json", f"Content-Length: {10**12}"),
         iter(()), 413, "request_too_large"),
        ("text: chunked 48 MiB", _head(stack, user, text, "application/json", "Transfer-Encoding: chunked"),
         _chunked(iter([b"["] * 48 + [PIECE] * 48)), 413, "request_too_large"),
    ]  # fmt: skip
    tracemalloc.start()
    try:
        for name, head, chunks, status, code in cases:
            tracemalloc.reset_peak()
            before, _ = tracemalloc.get_traced_memory()
            answer, body = await exchange(stack, head, chunks)
            _, peak = tracemalloc.get_traced_memory()
            assert (answer, json.loads(body)["error"]["code"]) == (status, code), name
            assert peak - before < HELD_AT_MOST, f"{name}: {(peak - before) // 1024} KiB held"
        # A small declared length followed by more bytes: only the declared bytes are the body (a
        # truncated form, 422); what follows is a malformed next request (uvicorn's own 400, which may
        # come first when it parses ahead), and the server hangs up. Never a 5xx.
        head = _head(stack, user, f"/sessions/{sid}/send/media", form, "Content-Length: 200")
        answer, body = await exchange(stack, head, iter([PREAMBLE, PIECE[:4096]]))
        assert answer in (400, 422), body
        if answer == 422:
            assert json.loads(body)["error"]["code"] == "invalid_request"
        # 48 MiB after a declared 200 B: the answer may be lost to the reset of a client that keeps
        # sending after the server hung up; what matters is that none of it is held.
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        head = _head(stack, user, f"/sessions/{sid}/send/media", form, "Content-Length: 200")
        with contextlib.suppress(OSError):
            await exchange(stack, head, _pieces(48))
        _, peak = tracemalloc.get_traced_memory()
        assert peak - before < HELD_AT_MOST, f"{(peak - before) // 1024} KiB held"
    finally:
        tracemalloc.stop()

    # The session still works, and none of it reached the network.
    async with stack.client(user) as client:
        assert (await client.get(f"/simulator/sessions/{sid}/sent")).json() == []
        ok = await client.post(text, json={"to": "+15551112222", "text": "still here"})
        assert ok.status_code == 200, ok.text


async def test_audio_edges_through_the_api_are_415(stack: Stack, paired: tuple[str, str]) -> None:
    user, sid = paired
    async with stack.client(user) as client:
        for name, data, message in (
            ("bomb.webm", silent_opus_webm(3 * 3600)[: LIMIT - 4096], "longer than"),
            ("surround.wav", multichannel_wav("5.1"), "6 channels"),
        ):
            answer = await client.post(
                f"/sessions/{sid}/send/audio",
                data={"to": "+15551112222"},
                files={"file": (name, data, "audio/webm")},
            )
            assert answer.status_code == 415, (name, answer.text)
            assert answer.json()["error"]["code"] == "unsupported_audio"
            assert message in answer.json()["error"]["message"], name
        big = await client.post(
            f"/sessions/{sid}/send/audio",
            data={"to": "+15551112222"},
            files={"file": ("big.wav", media_samples.audio("wav", 7.0), "audio/wav")},  # 1.2 MiB
        )
        assert big.status_code == 413 and big.json()["error"]["code"] == "media_too_large"
        sent = (await client.get(f"/simulator/sessions/{sid}/sent")).json()
        assert [item for item in sent if item["type"] == "audio"] == []
