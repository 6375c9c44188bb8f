"""Media test inputs generated in-process with PyAV (no binary fixtures, no system ffmpeg)."""

from __future__ import annotations

import array
import functools
import io
import math
import random
import zipfile
from dataclasses import dataclass
from fractions import Fraction

import av
from av.audio.stream import AudioStream
from av.video.codeccontext import VideoCodecContext
from av.video.stream import VideoStream

PCM_RATE = 44100


@dataclass(frozen=True, slots=True)
class AudioSpec:
    """How to write one audio format: container, encoder, rate, layout, encoder and muxer options."""

    container: str
    codec: str
    rate: int = PCM_RATE
    layout: str = "stereo"
    options: tuple[tuple[str, str], ...] = ()
    container_options: tuple[tuple[str, str], ...] = ()


AUDIO = {
    "wav": AudioSpec("wav", "pcm_s16le"),
    "mp3": AudioSpec("mp3", "libmp3lame"),
    "ogg-vorbis": AudioSpec("ogg", "vorbis", options=(("strict", "experimental"),)),
    "ogg-opus": AudioSpec("ogg", "libopus", rate=48000),
    # What Chrome's MediaRecorder writes: Opus in a live WebM (unknown sizes, no duration, no cues).
    "webm-opus": AudioSpec("webm", "libopus", rate=48000, container_options=(("live", "1"),)),
    "m4a-aac": AudioSpec("ipod", "aac"),
    "adts-aac": AudioSpec("adts", "aac"),
    "amr": AudioSpec("amr", "libopencore_amrnb", rate=8000, layout="mono"),
    "flac": AudioSpec("flac", "flac"),
    "mp3-no-id3": AudioSpec("mp3", "libmp3lame", container_options=(("id3v2_version", "0"),)),
    "mp3-22k-mono": AudioSpec(
        "mp3", "libmp3lame", rate=22050, layout="mono", container_options=(("id3v2_version", "0"),)
    ),
    "mkv-vorbis": AudioSpec("matroska", "vorbis", options=(("strict", "experimental"),)),
    "3gp-amr": AudioSpec("3gp", "libopencore_amrnb", rate=8000, layout="mono"),
    "mp4-aac": AudioSpec("mp4", "aac"),
}


@functools.cache
def pcm(seconds: float, rate: int = PCM_RATE, channels: int = 2, loud_from: float = 0.5) -> bytes:
    """Interleaved s16 PCM: a 440 Hz tone plus noise, quiet (1/5 level) before `loud_from` of the length."""
    rnd = random.Random(7)
    samples = array.array("h")
    n = int(seconds * rate)
    for i in range(n):
        level = 1.0 if i >= loud_from * n else 0.2
        value = int(level * (9000 * math.sin(2 * math.pi * 440 * i / rate) + rnd.uniform(-3000, 3000)))
        samples.extend([value] * channels)
    return samples.tobytes()


def _frames(data: bytes, rate: int, layout: str, chunk: int = 1024) -> list[av.AudioFrame]:
    channels = av.AudioLayout(layout).nb_channels
    width = 2 * channels
    frames = []
    for start in range(0, len(data) // width, chunk):
        piece = data[start * width : (start + chunk) * width]
        frame = av.AudioFrame(format="s16", layout=layout, samples=len(piece) // width)
        frame.planes[0].update(piece)
        frame.sample_rate = rate
        frame.pts, frame.time_base = start, Fraction(1, rate)
        frames.append(frame)
    return frames


@functools.cache
def audio(name: str, seconds: float = 2.0, loud_from: float = 0.5) -> bytes:
    """`seconds` of the test signal written in the format `name` (a key of AUDIO)."""
    spec = AUDIO[name]
    channels = av.AudioLayout(spec.layout).nb_channels
    source = pcm(seconds, PCM_RATE, channels, loud_from)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=spec.container, options=dict(spec.container_options)) as out:
        stream = out.add_stream(spec.codec, rate=spec.rate, options=dict(spec.options))
        assert isinstance(stream, AudioStream)
        stream.layout = spec.layout
        resampler = av.AudioResampler(format="s16", layout=spec.layout, rate=spec.rate)
        for frame in [*_frames(source, PCM_RATE, spec.layout), None]:
            for converted in resampler.resample(frame):
                out.mux(stream.encode(converted))
        out.mux(stream.encode(None))
    return buffer.getvalue()


def empty_wav() -> bytes:
    """A well-formed WAV file with no samples."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="wav") as out:
        out.add_stream("pcm_s16le", rate=PCM_RATE)
        out.start_encoding()
    return buffer.getvalue()


def _video_frame(width: int, height: int, index: int) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, "yuv420p")
    for number, plane in enumerate(frame.planes):
        plane.update(bytes([(index * 16 + number * 80) % 256]) * plane.buffer_size)
    frame.pts = index
    return frame


@functools.cache
def video(
    container: str = "mp4", codec: str = "libx264", *, with_audio: bool = True, frames: int = 10
) -> bytes:
    """A tiny 10 fps clip, with a mono AAC or Opus track when `with_audio`."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        picture = out.add_stream(codec, rate=10)
        assert isinstance(picture, VideoStream)
        picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
        sound = None
        if with_audio:
            sound = out.add_stream("libopus" if container in ("webm", "matroska") else "aac", rate=48000)
            assert isinstance(sound, AudioStream)
            sound.layout = "mono"
        for index in range(frames):
            out.mux(picture.encode(_video_frame(64, 48, index)))
        out.mux(picture.encode(None))
        if sound is not None:
            resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
            for frame in [*_frames(pcm(frames / 10, PCM_RATE, 1), PCM_RATE, "mono"), None]:
                for converted in resampler.resample(frame):
                    out.mux(sound.encode(converted))
            out.mux(sound.encode(None))
    return buffer.getvalue()


def image(codec: str) -> bytes:
    """A small picture encoded by `codec` (`png`, `mjpeg`, `gif`, `libwebp`) as a complete file."""
    pix_fmt = {"png": "rgb24", "mjpeg": "yuvj420p", "gif": "rgb8", "libwebp": "yuv420p"}[codec]
    context = av.CodecContext.create(codec, "w")
    assert isinstance(context, VideoCodecContext)
    context.width, context.height, context.pix_fmt = 32, 24, pix_fmt
    context.time_base = Fraction(1, 1)
    frame = av.VideoFrame(32, 24, "rgb24").reformat(format=pix_fmt)
    frame.pts = 0
    packets = [*context.encode(frame), *context.encode(None)]
    return b"".join(bytes(packet) for packet in packets)


def office(kind: str) -> bytes:
    """A minimal OOXML (`docx`, `xlsx`, `pptx`) or ODF (`odt`) package."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        if kind == "odt":
            archive.writestr("mimetype", "application/vnd.oasis.opendocument.text", zipfile.ZIP_STORED)
            archive.writestr("content.xml", "<office:document-content/>")
        else:
            archive.writestr("[Content_Types].xml", "<Types/>")
            archive.writestr("_rels/.rels", "<Relationships/>")
            folder = {"docx": "word/document.xml", "xlsx": "xl/workbook.xml", "pptx": "ppt/presentation.xml"}
            archive.writestr(folder[kind], "<x/>")
    return buffer.getvalue()


def plain_zip() -> bytes:
    """A ZIP archive that is no office document."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes/readme.txt", "hello")
    return buffer.getvalue()


def random_bytes(n: int = 4096, seed: int = 3) -> bytes:
    """Deterministic noise that matches no magic number (the seed is chosen for that)."""
    return random.Random(seed).randbytes(n)
