"""actors.media: size guards, sniffing and classification, voice-note conversion, the Ogg parser."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator, Callable

import av
import pytest

from actors.media import (
    OCTET_STREAM,
    OPUS_OGG,
    InvalidOgg,
    check_size,
    classify,
    inspect_ogg_opus,
    limit_stream,
    media_info,
    outgoing_media,
    probe_seconds,
    read_file_limited,
    read_limited,
    sniff,
    to_voice_note,
    voice_note_info,
    waveform,
    whole_seconds,
)
from actors.media.ogg import ogg_crc
from kernel.domain import Media, MessageType
from kernel.errors import MediaTooLarge, UnsupportedAudio, UnsupportedMedia
from tests import media_samples as samples

IMAGE, VIDEO, AUDIO, DOCUMENT = MessageType.IMAGE, MessageType.VIDEO, MessageType.AUDIO, MessageType.DOCUMENT
OOXML = "application/vnd.openxmlformats-officedocument."

# ---- size guards -----------------------------------------------------------------------------------


def test_check_size_allows_exactly_the_limit() -> None:
    check_size(1000, 1000)
    with pytest.raises(MediaTooLarge) as caught:
        check_size(1001, 1000)
    assert caught.value.code == "media_too_large"
    assert caught.value.http_status == 413


class _CountingStream:
    """An async byte stream that records how many bytes the consumer pulled."""

    def __init__(self, chunks: int, size: int) -> None:
        self.chunks, self.size, self.pulled = chunks, size, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.pulled += self.size
            yield b"x" * self.size


async def test_read_limited_accepts_a_body_of_exactly_the_limit() -> None:
    stream = _CountingStream(chunks=4, size=100)
    assert await read_limited(stream, 400) == b"x" * 400
    assert stream.pulled == 400


async def test_read_limited_stops_pulling_once_past_the_limit() -> None:
    stream = _CountingStream(chunks=100, size=100)
    with pytest.raises(MediaTooLarge):
        await read_limited(stream, 250)
    assert stream.pulled == 300  # the third chunk crossed the limit; the other 97 were never read


async def test_limit_stream_passes_chunks_through_until_the_limit() -> None:
    seen: list[bytes] = []

    async def consume() -> None:
        async for chunk in limit_stream(_CountingStream(chunks=5, size=10), 35):
            seen.append(chunk)

    with pytest.raises(MediaTooLarge):
        await consume()
    assert seen == [b"x" * 10] * 3


class _FakeUpload:
    """An `UploadFile`-like object over `size` bytes that records each read."""

    def __init__(self, size: int) -> None:
        self.data = io.BytesIO(b"y" * size)
        self.pulled = 0

    async def read(self, size: int = -1) -> bytes:
        chunk = self.data.read(size)
        self.pulled += len(chunk)
        return chunk


async def test_read_file_limited_pulls_at_most_one_byte_past_the_limit() -> None:
    exact = _FakeUpload(1000)
    assert await read_file_limited(exact, 1000, chunk_size=64) == b"y" * 1000
    big = _FakeUpload(10_000_000)
    with pytest.raises(MediaTooLarge):
        await read_file_limited(big, 1000, chunk_size=64)
    assert big.pulled == 1001


# ---- sniffing and classification -----------------------------------------------------------------


def _ftyp(brand: bytes, *compatible: bytes) -> bytes:
    body = brand + b"\0\0\0\0" + b"".join(compatible)
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body + b"\0\0\0\x08free"


SNIFF_TABLE: list[tuple[str, Callable[[], bytes], MessageType, str]] = [
    ("jpeg", lambda: samples.image("mjpeg"), IMAGE, "image/jpeg"),
    ("png", lambda: samples.image("png"), IMAGE, "image/png"),
    ("gif", lambda: samples.image("gif"), IMAGE, "image/gif"),
    ("webp", lambda: samples.image("libwebp"), IMAGE, "image/webp"),
    ("heic", lambda: _ftyp(b"heic", b"mif1", b"heic"), IMAGE, "image/heic"),
    ("avif", lambda: _ftyp(b"avif", b"mif1", b"avif"), IMAGE, "image/avif"),
    ("mp4 video", lambda: samples.video("mp4", "libx264"), VIDEO, "video/mp4"),
    ("mov video", lambda: samples.video("mov", "libx264"), VIDEO, "video/quicktime"),
    ("3gp video", lambda: samples.video("3gp", "libx264", with_audio=False), VIDEO, "video/3gpp"),
    ("m4a", lambda: samples.audio("m4a-aac"), AUDIO, "audio/mp4"),
    ("mp4 audio only", lambda: samples.audio("mp4-aac"), AUDIO, "audio/mp4"),
    ("3gp audio only", lambda: samples.audio("3gp-amr"), AUDIO, "audio/3gpp"),
    ("webm video", lambda: samples.video("webm", "libvpx"), VIDEO, "video/webm"),
    ("webm audio (MediaRecorder)", lambda: samples.audio("webm-opus"), AUDIO, "audio/webm"),
    ("mkv video", lambda: samples.video("matroska", "libx264", with_audio=False), VIDEO, "video/x-matroska"),
    ("mkv audio", lambda: samples.audio("mkv-vorbis"), AUDIO, "audio/x-matroska"),
    ("ogg opus", lambda: samples.audio("ogg-opus"), AUDIO, OPUS_OGG),
    ("ogg vorbis", lambda: samples.audio("ogg-vorbis"), AUDIO, "audio/ogg"),
    ("mp3 with ID3", lambda: samples.audio("mp3"), AUDIO, "audio/mpeg"),
    ("mp3 frame sync", lambda: samples.audio("mp3-no-id3"), AUDIO, "audio/mpeg"),
    ("wav", lambda: samples.audio("wav", 0.2), AUDIO, "audio/wav"),
    ("adts", lambda: samples.audio("adts-aac"), AUDIO, "audio/aac"),
    ("amr", lambda: samples.audio("amr"), AUDIO, "audio/amr"),
    ("flac", lambda: samples.audio("flac", 0.2), AUDIO, "audio/flac"),
    ("pdf", lambda: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", DOCUMENT, "application/pdf"),
    ("docx", lambda: samples.office("docx"), DOCUMENT, OOXML + "wordprocessingml.document"),
    ("xlsx", lambda: samples.office("xlsx"), DOCUMENT, OOXML + "spreadsheetml.sheet"),
    ("pptx", lambda: samples.office("pptx"), DOCUMENT, OOXML + "presentationml.presentation"),
    ("odt", lambda: samples.office("odt"), DOCUMENT, "application/vnd.oasis.opendocument.text"),
    ("zip", samples.plain_zip, DOCUMENT, "application/zip"),
    ("text", lambda: "héllo, wörld\n".encode() * 20, DOCUMENT, "text/plain"),
]


@pytest.mark.parametrize(
    ("make", "kind", "mimetype"), [row[1:] for row in SNIFF_TABLE], ids=[row[0] for row in SNIFF_TABLE]
)
def test_sniff_recognises_content(make: Callable[[], bytes], kind: MessageType, mimetype: str) -> None:
    sniffed = sniff(make())
    assert sniffed is not None
    assert (sniffed.kind, sniffed.mimetype) == (kind, mimetype)


@pytest.mark.parametrize(
    "data",
    [b"", samples.random_bytes(), b"\x00\x01\x02\x03" * 50, b"\xff\xfb\x90"],
    ids=["empty", "random", "binary", "short sync"],
)
def test_sniff_gives_up_on_unknown_content(data: bytes) -> None:
    assert sniff(data) is None


@pytest.mark.parametrize(
    ("make", "declared", "expected"),
    [
        (lambda: samples.image("png"), "video/mp4", (IMAGE, "image/png")),
        (lambda: samples.audio("mp3"), "image/jpeg", (AUDIO, "audio/mpeg")),
        (lambda: samples.audio("webm-opus"), "video/webm", (AUDIO, "audio/webm")),
        (lambda: samples.video("mp4", "libx264"), "audio/mp4", (VIDEO, "video/mp4")),
        (lambda: samples.office("docx"), "application/zip", (DOCUMENT, OOXML + "wordprocessingml.document")),
        (lambda: b"%PDF-1.4\n", "image/png", (DOCUMENT, "application/pdf")),
        (samples.random_bytes, "image/png", (DOCUMENT, OCTET_STREAM)),
        (samples.random_bytes, "application/pdf", (DOCUMENT, OCTET_STREAM)),
    ],
    ids=[
        "png as mp4",
        "mp3 as jpeg",
        "webm audio as video",
        "mp4 video as audio",
        "docx",
        "pdf",
        "noise",
        "pdf?",
    ],
)
def test_declared_type_never_overrides_content(
    make: Callable[[], bytes], declared: str, expected: tuple[MessageType, str]
) -> None:
    assert classify(make(), declared, "upload.bin") == expected


def test_declared_type_refines_generic_content() -> None:
    text = b"name,phone\nalice,+15551234567\n"
    assert classify(text, "text/csv; charset=utf-8", None) == (DOCUMENT, "text/csv")
    assert classify(text, None, "contacts.csv") == (DOCUMENT, "text/csv")
    assert classify(text, "image/png", None) == (DOCUMENT, "text/plain")
    apk = "application/vnd.android.package-archive"
    assert classify(samples.plain_zip(), apk, "app.apk") == (DOCUMENT, apk)
    assert classify(samples.plain_zip(), "application/pdf", None) == (DOCUMENT, "application/zip")
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)
    assert classify(ole, None, "report.doc") == (DOCUMENT, "application/msword")
    assert classify(ole, "application/vnd.ms-excel", None) == (DOCUMENT, "application/vnd.ms-excel")
    assert classify(ole, None, None) == (DOCUMENT, OCTET_STREAM)


def test_outgoing_media_sends_what_whatsapp_shows_inline_and_the_rest_as_documents() -> None:
    png = outgoing_media(samples.image("png"), declared_mimetype="image/png", caption="look")
    assert (png.kind, png.mimetype, png.file_name, png.caption) == (IMAGE, "image/png", None, "look")
    mp4 = outgoing_media(samples.video("mp4", "libx264"), file_name="clip.mp4")
    assert (mp4.kind, mp4.mimetype, mp4.file_name) == (VIDEO, "video/mp4", "clip.mp4")
    m4a = outgoing_media(samples.audio("m4a-aac"))
    assert (m4a.kind, m4a.mimetype) == (AUDIO, "audio/mp4")
    webm = outgoing_media(samples.video("webm", "libvpx"))
    assert (webm.kind, webm.mimetype, webm.file_name) == (DOCUMENT, "video/webm", "file.webm")
    noise = outgoing_media(samples.random_bytes(), declared_mimetype="image/jpeg", file_name="../etc/x.jpg")
    assert (noise.kind, noise.mimetype, noise.file_name) == (DOCUMENT, OCTET_STREAM, "x.jpg")
    docx = outgoing_media(samples.office("docx"), file_name="C:\\Users\\me\\cv.docx", caption="")
    assert (docx.kind, docx.file_name, docx.caption) == (DOCUMENT, "cv.docx", None)
    with pytest.raises(UnsupportedMedia):
        outgoing_media(b"")


def test_office_sniffing_survives_a_damaged_zip() -> None:
    damaged = samples.office("docx")[:-30]  # central directory cut off
    assert classify(damaged, None, None) == (DOCUMENT, "application/zip")
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("mimetype", "a" * 10_000_000)  # not read: too big to be a mimetype entry
    assert classify(bomb.getvalue(), None, None) == (DOCUMENT, "application/zip")


# ---- voice notes -----------------------------------------------------------------------------------

VOICE_INPUTS = ["wav", "mp3", "ogg-vorbis", "ogg-opus", "webm-opus", "m4a-aac", "adts-aac", "amr", "flac"]


def _decode(ogg: bytes) -> tuple[str, int, int, int]:
    """Codec, sample rate, channels and sample count of an Ogg file, decoded by FFmpeg."""
    with av.open(io.BytesIO(ogg), "r") as container:
        stream = container.streams.audio[0]
        samples_decoded = sum(frame.samples for frame in container.decode(stream))
        return stream.codec_context.name, stream.sample_rate, stream.channels, samples_decoded


@pytest.mark.parametrize("name", VOICE_INPUTS)
def test_voice_note_from_each_format(name: str) -> None:
    seconds_in = 2.0
    note = to_voice_note(samples.audio(name, seconds_in))
    codec, rate, channels, decoded = _decode(note.ogg)
    assert (codec, rate, channels) == ("opus", 48000, 1)
    assert decoded / 48000 == pytest.approx(seconds_in, abs=0.15)
    info = inspect_ogg_opus(note.ogg)
    assert (info.channels, info.input_rate) == (1, 48000)
    assert info.duration_s == pytest.approx(decoded / 48000, abs=0.001)  # our parser agrees with FFmpeg
    # Rounded up, but the encoders' few ms of priming and padding do not make a 2 s recording "0:03".
    assert note.seconds == 2
    assert note.mimetype == "audio/ogg; codecs=opus"
    # ~32 kb/s: 2 s is about 8 KB of Opus plus Ogg overhead.
    assert 6_000 < len(note.ogg) < 12_000
    # The waveform follows the signal: the first half is 5x quieter than the second.
    assert note.waveform is not None and len(note.waveform) == 64
    assert max(note.waveform) == 100 and all(0 <= v <= 100 for v in note.waveform)
    first, second = note.waveform[4:28], note.waveform[36:60]
    assert max(first) < 40 < min(second)


def test_voice_note_from_m4a_keeps_its_exact_length() -> None:
    # The AAC decoder pads the last frame; the MP4's own duration says where the sound ends.
    note = to_voice_note(samples.audio("m4a-aac", 2.0))
    assert inspect_ogg_opus(note.ogg).duration_s == pytest.approx(2.0, abs=0.002)


def test_voice_note_from_a_video_uses_its_sound_track() -> None:
    note = to_voice_note(samples.video("webm", "libvpx", frames=10))
    assert inspect_ogg_opus(note.ogg).duration_s == pytest.approx(1.0, abs=0.15)
    assert note.seconds == 1


def test_voice_note_survives_a_format_change_mid_stream() -> None:
    # Concatenated MP3s (44.1 kHz stereo, then 22.05 kHz mono): the resampler must be rebuilt mid-way.
    note = to_voice_note(samples.audio("mp3", 1.0) + samples.audio("mp3-22k-mono", 1.0))
    assert inspect_ogg_opus(note.ogg).duration_s == pytest.approx(2.0, abs=0.15)
    assert note.waveform is not None and min(note.waveform[36:60]) > 0


def test_whole_seconds_rounds_up_past_codec_padding() -> None:
    assert [whole_seconds(s) for s in (0.0, 0.01, 1.0, 1.04, 1.06, 2.5, 3.0)] == [1, 1, 1, 1, 2, 3, 3]


def test_short_voice_note_is_one_second_with_a_full_waveform() -> None:
    note = to_voice_note(samples.audio("wav", 0.3))
    assert note.seconds == 1
    assert note.waveform is not None and len(note.waveform) == 64 and max(note.waveform) == 100


@pytest.mark.parametrize(
    "make",
    [
        lambda: b"",
        samples.random_bytes,
        lambda: samples.image("png"),
        lambda: samples.image("mjpeg"),
        lambda: b"%PDF-1.4\n" + bytes(100),
        samples.empty_wav,
        lambda: samples.audio("wav", 0.5)[:44],
        lambda: samples.audio("mp3")[:200],
        lambda: samples.audio("m4a-aac")[:2000],
        lambda: samples.video("mp4", "libx264", with_audio=False),
        lambda: b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n",
    ],
    ids=[
        "empty",
        "random",
        "png",
        "jpeg",
        "pdf",
        "zero-length wav",
        "wav header only",
        "truncated mp3",
        "truncated m4a",
        "video without sound",
        "playlist",
    ],
)
def test_undecodable_input_is_unsupported_audio(make: Callable[[], bytes]) -> None:
    with pytest.raises(UnsupportedAudio) as caught:
        to_voice_note(make())
    assert caught.value.http_status == 415


@pytest.mark.parametrize("name", ["wav", "webm-opus", "adts-aac"])
def test_voice_note_refuses_audio_longer_than_the_cap(name: str) -> None:
    data = samples.audio(name, 2.5)
    # 2.5 s passes the cheap header check for a 2 s cap, so this is the decoder's own count stopping it.
    with pytest.raises(UnsupportedAudio, match="longer than 2 seconds"):
        to_voice_note(data, max_seconds=2)
    assert to_voice_note(data, max_seconds=None).seconds == 3


def test_voice_note_refuses_a_declared_duration_over_the_cap_without_decoding() -> None:
    with pytest.raises(UnsupportedAudio, match="longer than 1 seconds"):
        to_voice_note(samples.audio("wav", 2.5), max_seconds=1)


async def test_voice_notes_convert_concurrently_in_worker_threads() -> None:
    inputs = [samples.audio(name, 1.5) for name in ("wav", "webm-opus", "mp3", "m4a-aac")]
    notes = await asyncio.gather(*(asyncio.to_thread(to_voice_note, data) for data in inputs))
    assert [note.seconds for note in notes] == [2, 2, 2, 2]
    assert all(inspect_ogg_opus(note.ogg).channels == 1 for note in notes)


def test_importing_media_does_not_load_pyav() -> None:
    code = "import sys, actors.media, actors.media.audio; sys.exit('av' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=60).returncode == 0


def test_waveform_is_peak_normalised_rms() -> None:
    assert waveform([], []) == bytes(64)
    assert waveform([0.0] * 200, [480] * 200) == bytes(64)
    ramp = waveform([float(i * i * 480) for i in range(128)], [480] * 128)  # RMS grows linearly
    assert len(ramp) == 64 and ramp[-1] == 100 and list(ramp) == sorted(ramp)
    assert ramp[31] == pytest.approx(50, abs=2)
    assert len(waveform([1.0] * 10, [480] * 10)) == 64  # fewer blocks than buckets


def test_probe_seconds() -> None:
    assert probe_seconds(samples.audio("m4a-aac", 1.5)) == 2
    assert probe_seconds(samples.audio("ogg-opus", 1.5)) == 2
    assert probe_seconds(samples.audio("wav", 2.5)) == 3
    assert probe_seconds(samples.audio("mp3", 1.5)) == 2
    assert probe_seconds(samples.audio("mp3", 1.5), use_av=False) is None  # MP3 needs FFmpeg's estimate
    assert probe_seconds(samples.video("mp4", "libx264", frames=10)) == 1
    assert probe_seconds(samples.image("png")) is None
    assert probe_seconds(samples.random_bytes()) is None


def test_media_info_describes_what_was_sent() -> None:
    m4a = outgoing_media(samples.audio("m4a-aac", 1.5), "audio/x-m4a", "memo.m4a", None)
    assert media_info(m4a) == Media("audio/mp4", "memo.m4a", len(m4a.data), seconds=2, ptt=False)
    doc = outgoing_media(samples.office("xlsx"), None, "sheet.xlsx", "numbers")
    assert media_info(doc) == Media(OOXML + "spreadsheetml.sheet", "sheet.xlsx", len(doc.data))
    note = to_voice_note(samples.audio("webm-opus", 1.0))
    assert voice_note_info(note) == Media(OPUS_OGG, None, len(note.ogg), seconds=1, ptt=True)


# ---- the Ogg parser --------------------------------------------------------------------------------


def test_ogg_parser_reads_what_ffmpeg_wrote() -> None:
    stereo = samples.audio("ogg-opus", 1.0)
    info = inspect_ogg_opus(stereo)
    with av.open(io.BytesIO(stereo), "r") as container:
        stream = container.streams.audio[0]
        decoded = sum(frame.samples for frame in container.decode(stream))
    assert info.channels == stream.channels == 2
    assert info.pre_skip == 312
    assert info.duration_s == pytest.approx(decoded / 48000, abs=0.001)


def test_ogg_crc_matches_the_checksum_in_a_real_page() -> None:
    page = bytearray(samples.audio("ogg-opus", 0.5)[: 27 + 1 + 19])  # the OpusHead page
    stored = int.from_bytes(page[22:26], "little")
    page[22:26] = bytes(4)
    assert ogg_crc(bytes(page)) == stored


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x40]) + data[at + 1 :]


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: b"", "does not begin"),
        (samples.random_bytes, "capture pattern"),
        (lambda: samples.audio("ogg-opus", 0.5)[:-10], "truncated"),
        (lambda: _flip(samples.audio("ogg-opus", 0.5), 2000), "checksum"),
        (lambda: samples.audio("ogg-vorbis", 0.5), "OpusHead"),
        (lambda: samples.audio("webm-opus", 0.5), "capture pattern"),
    ],
    ids=["empty", "random", "truncated", "corrupted", "vorbis", "webm"],
)
def test_ogg_parser_rejects_broken_streams(make: Callable[[], bytes], error: str) -> None:
    with pytest.raises(InvalidOgg, match=error):
        inspect_ogg_opus(make())
