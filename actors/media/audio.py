"""Voice notes: any common audio file to WhatsApp's OGG/Opus, in-process with PyAV.

`av` is imported inside the functions that use it: every session process imports this module, and
loading FFmpeg costs ~15 MB of RSS that only a process that converts should pay. Nothing here keeps
state between calls, so conversions may run concurrently in worker threads (`asyncio.to_thread`).
"""

from __future__ import annotations

import io
import logging
import math
import operator
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING

from actors.media.ogg import OPUS_RATE, InvalidOgg, OggOpusInfo, inspect_ogg_opus
from actors.media.probe import PROBE_OPTIONS, demuxer_for, whole_seconds
from actors.ports import VoiceNote
from kernel.errors import UnsupportedAudio

if TYPE_CHECKING:
    from av.audio.frame import AudioFrame
    from av.audio.stream import AudioStream
    from av.container import InputContainer

log = logging.getLogger(__name__)

MAX_VOICE_SECONDS = 30 * 60
# Mono or stereo, as phones and browsers record; more is refused before any work is spent on it.
MAX_CHANNELS = 2
VOICE_BIT_RATE = 32000
WAVEFORM_LENGTH = 64
_BLOCK = OPUS_RATE // 100  # waveform energy is kept per 10 ms block
_SLACK_SAMPLES = OPUS_RATE // 50  # one Opus frame: how far the Ogg granule may differ from what we fed


@dataclass(slots=True)
class _Encoded:
    """What the transcoder produced: the Ogg bytes, the samples fed to the encoder, energy per block."""

    ogg: bytes = b""
    samples: int = 0
    energy: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)


def to_voice_note(data: bytes, max_seconds: int | None = MAX_VOICE_SECONDS) -> VoiceNote:
    """Convert an audio file to a validated OGG/Opus mono 48 kHz voice note; `max_seconds` None: no cap."""
    if not data:
        raise UnsupportedAudio("The file is empty")
    demuxer = demuxer_for(data)
    if demuxer is None:
        raise UnsupportedAudio("The file is not a recognised audio format")
    import av

    started = time.perf_counter()
    try:
        _check_decoded_length(data, demuxer, max_seconds)
        encoded = _transcode(data, demuxer, max_seconds)
    except (av.FFmpegError, ValueError) as err:
        raise UnsupportedAudio("The audio could not be decoded") from err
    if encoded.samples == 0:
        raise UnsupportedAudio("The file holds no audio")
    info = _validated(encoded)
    note = VoiceNote(
        ogg=encoded.ogg,
        seconds=whole_seconds(info.duration_s),
        waveform=waveform(encoded.energy, encoded.counts),
    )
    log.debug(
        "voice note: %s, %d bytes -> %d bytes, %.2f s, in %.0f ms",
        demuxer,
        len(data),
        len(note.ogg),
        info.duration_s,
        (time.perf_counter() - started) * 1000,
    )
    return note


def _transcode(data: bytes, demuxer: str, max_seconds: int | None) -> _Encoded:
    import av

    max_samples = None if max_seconds is None else max_seconds * OPUS_RATE
    result = _Encoded()
    out_buffer = io.BytesIO()
    with av.open(io.BytesIO(data), "r", format=demuxer, container_options=PROBE_OPTIONS) as source:
        if not source.streams.audio:
            raise UnsupportedAudio("The file has no audio track")
        stream = source.streams.audio[0]
        declared = _declared_seconds(source.duration, stream.duration, stream.time_base)
        if max_seconds is not None and declared is not None and declared > max_seconds * 1.1 + 1:
            raise _too_long(max_seconds)  # refused before decoding; the count below is the real bound
        # MP4 knows its exact length; its AAC decoder would otherwise add the last frame's padding.
        end_samples = None
        if demuxer == "mov" and stream.duration and stream.time_base:
            end_samples = round(stream.duration * stream.time_base * OPUS_RATE)

        with av.open(out_buffer, "w", format="ogg") as sink:
            encoder = sink.add_stream("libopus", rate=OPUS_RATE, options={"application": "voip"})
            encoder.layout, encoder.format, encoder.bit_rate = "mono", "flt", VOICE_BIT_RATE
            for frame in _mono_frames(source, stream):
                if end_samples is not None and result.samples + frame.samples > end_samples:
                    frame = _head(frame, end_samples - result.samples)
                    if frame.samples <= 0:
                        break
                _accumulate(result, frame)
                # Our own timeline: input timestamps may start late or jump, the Ogg granules must not.
                frame.pts, frame.time_base = result.samples, Fraction(1, OPUS_RATE)
                result.samples += frame.samples
                if max_samples is not None and result.samples > max_samples:
                    raise _too_long(max_seconds or 0)
                sink.mux(encoder.encode(frame))
            if result.samples:
                sink.mux(encoder.encode(None))
    result.ogg = out_buffer.getvalue()
    return result


def _check_decoded_length(data: bytes, demuxer: str, max_seconds: int | None) -> None:
    """Decode only (no resampling, no encoding), counting what comes out: a small file that decodes to
    hours, or to more than MAX_CHANNELS channels, is refused here, at the cost of decoding the capped
    length once (a 3-hour Opus file of 3.5 MB: about 1 s instead of 40 s for the full conversion)."""
    import av

    with av.open(io.BytesIO(data), "r", format=demuxer, container_options=PROBE_OPTIONS) as source:
        if not source.streams.audio:
            raise UnsupportedAudio("The file has no audio track")
        stream = source.streams.audio[0]
        _check_channels(stream.codec_context.channels)
        declared = _declared_seconds(source.duration, stream.duration, stream.time_base)
        if max_seconds is not None and declared is not None and declared > max_seconds * 1.1 + 1:
            raise _too_long(max_seconds)
        seconds = 0.0
        for frame in _decoded(source, stream):
            _check_channels(frame.layout.nb_channels)
            seconds += frame.samples / (frame.sample_rate or OPUS_RATE)
            if max_seconds is not None and seconds > max_seconds:
                raise _too_long(max_seconds)


def _check_channels(channels: int) -> None:
    if channels > MAX_CHANNELS:
        raise UnsupportedAudio(
            f"The audio has {channels} channels; at most {MAX_CHANNELS} are accepted", channels=channels
        )


def _decoded(source: InputContainer, stream: AudioStream, *, report: bool = False) -> Iterator[AudioFrame]:
    """The stream's frames; a damaged packet in an otherwise sound file is skipped, as the ffmpeg CLI
    does (more than 50 damaged packets and more damaged than sound ones: the error is raised)."""
    import av

    bad = good = 0
    for packet in source.demux(stream):
        try:
            frames = stream.decode(packet)
            good += 1
        except av.error.InvalidDataError:
            bad += 1
            if bad > 50 and bad > good:
                raise
            continue
        yield from frames
    if bad and report:
        log.warning("voice note: skipped %d damaged packets of %d", bad, bad + good)


def _mono_frames(source: InputContainer, stream: AudioStream) -> Iterator[AudioFrame]:
    """The stream decoded and resampled to 10 ms frames of mono 48 kHz float."""
    import av

    resampler, layout = None, None
    for frame in _decoded(source, stream, report=True):
        # A chained Ogg or concatenated MP3 may change rate or channels mid-stream.
        if resampler is None or layout != (frame.format.name, frame.layout.name, frame.sample_rate):
            if resampler is not None:
                yield from resampler.resample(None)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=OPUS_RATE, frame_size=_BLOCK)
            layout = (frame.format.name, frame.layout.name, frame.sample_rate)
        frame.pts = None
        yield from resampler.resample(frame)
    if resampler is not None:
        yield from resampler.resample(None)


def _declared_seconds(
    container_us: int | None, duration: int | None, time_base: Fraction | None
) -> float | None:
    """The duration the file claims, if it claims one."""
    if duration and time_base:
        return float(duration * time_base)
    return container_us / 1_000_000 if container_us else None


def _too_long(max_seconds: int) -> UnsupportedAudio:
    return UnsupportedAudio(f"The audio is longer than {max_seconds} seconds", max_seconds=max_seconds)


def _samples(frame: AudioFrame) -> memoryview[float]:
    """The float samples of a packed mono `flt` frame."""
    return memoryview(frame.planes[0]).cast("B")[: frame.samples * 4].cast("f")


def _head(frame: AudioFrame, samples: int) -> AudioFrame:
    """The first `samples` samples of a packed mono `flt` frame."""
    import av

    head = av.AudioFrame(format="flt", layout="mono", samples=max(0, samples))
    head.sample_rate = frame.sample_rate
    if head.samples:
        head.planes[0].update(_samples(frame)[:samples].tobytes())
    return head


def _accumulate(result: _Encoded, frame: AudioFrame) -> None:
    values = _samples(frame)
    result.energy.append(sum(map(operator.mul, values, values)))
    result.counts.append(frame.samples)


def waveform(energy: Sequence[float], counts: Sequence[int], length: int = WAVEFORM_LENGTH) -> bytes:
    """WhatsApp's voice-note waveform: RMS per bucket, scaled so the loudest bucket is 100."""
    blocks = len(energy)
    if blocks == 0:
        return bytes(length)
    levels = []
    for i in range(length):
        lo = i * blocks // length
        hi = max(lo + 1, (i + 1) * blocks // length)
        n = sum(counts[lo:hi])
        levels.append(math.sqrt(sum(energy[lo:hi]) / n) if n else 0.0)
    peak = max(levels)
    if peak <= 0:
        return bytes(length)
    return bytes(min(100, round(100 * level / peak)) for level in levels)


def _validated(encoded: _Encoded) -> OggOpusInfo:
    """Check our own output before anyone sends it: a broken voice note fails silently on the phone."""
    try:
        info = inspect_ogg_opus(encoded.ogg)
    except InvalidOgg as err:
        log.error("voice note: the encoder produced an invalid Ogg stream: %s", err)
        raise UnsupportedAudio("The converted audio failed validation") from err
    drift = abs(info.duration_s * OPUS_RATE - encoded.samples)
    if info.channels != 1 or drift > _SLACK_SAMPLES:
        log.error("voice note: output has %d channels, granule drift %d samples", info.channels, drift)
        raise UnsupportedAudio("The converted audio failed validation")
    return info
