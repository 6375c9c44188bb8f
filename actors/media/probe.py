"""Durations and descriptions of outgoing media; pure Python unless a caller allows PyAV."""

from __future__ import annotations

import io
import math

from actors.media.containers import iso_duration, wav_duration
from actors.media.ogg import InvalidOgg, inspect_ogg_opus
from actors.media.sniff import OPUS_OGG, sniff
from actors.ports import OutgoingMedia, VoiceNote
from kernel.domain import Media, MessageType

# Demuxer by sniffed mimetype. Naming it keeps FFmpeg from probing (and so from playlist formats that
# open other files or URLs); content we do not recognise never reaches FFmpeg.
DEMUXERS = {
    "audio/wav": "wav",
    "audio/mpeg": "mp3",
    "audio/aac": "aac",
    "audio/flac": "flac",
    "audio/amr": "amr",
    "audio/amr-wb": "amr",
    "audio/ogg": "ogg",
    OPUS_OGG: "ogg",
    "video/ogg": "ogg",
    "audio/webm": "matroska",
    "video/webm": "matroska",
    "audio/x-matroska": "matroska",
    "video/x-matroska": "matroska",
    "audio/mp4": "mov",
    "audio/3gpp": "mov",
    "audio/3gpp2": "mov",
    "audio/quicktime": "mov",
    "video/mp4": "mov",
    "video/quicktime": "mov",
    "video/3gpp": "mov",
    "video/3gpp2": "mov",
}

# Every demuxer above reads codec parameters from its headers; FFmpeg's default 5 MB probe would decode
# that much (30 ms for a 3 s WAV) before the first frame.
PROBE_OPTIONS = {"probesize": str(64 * 1024)}

_PADDING_S = 0.05  # AAC priming, Vorbis and AMR frame padding: a "3 s" file decodes to up to 3.045 s


def demuxer_for(data: bytes) -> str | None:
    """The FFmpeg demuxer for audio or video content, or None for anything else."""
    sniffed = sniff(data)
    return DEMUXERS.get(sniffed.mimetype) if sniffed is not None else None


def whole_seconds(duration_s: float) -> int:
    """Seconds rounded up, at least 1; codec priming and padding (under 50 ms) do not start a new second."""
    return max(1, math.ceil(duration_s - _PADDING_S))


def probe_seconds(data: bytes, *, use_av: bool = True) -> int | None:
    """An audio or video file's duration in whole seconds from its headers; PyAV only if `use_av`."""
    sniffed = sniff(data)
    demuxer = DEMUXERS.get(sniffed.mimetype) if sniffed is not None else None
    seconds: float | None = None
    if demuxer == "mov":
        seconds = iso_duration(data)
    elif demuxer == "wav":
        seconds = wav_duration(data)
    elif sniffed is not None and sniffed.mimetype == OPUS_OGG:
        try:
            seconds = inspect_ogg_opus(data, verify_crc=False).duration_s
        except InvalidOgg:
            seconds = None
    elif demuxer is not None and use_av:
        import av

        try:
            with av.open(io.BytesIO(data), "r", format=demuxer, container_options=PROBE_OPTIONS) as source:
                seconds = source.duration / 1_000_000 if source.duration else None
        except (av.FFmpegError, ValueError):
            seconds = None
    return whole_seconds(seconds) if seconds else None


def media_info(media: OutgoingMedia) -> Media:
    """How a sent file is stored and shown; cheap enough for the event loop (no PyAV, no decoding)."""
    seconds = None
    if media.kind in (MessageType.AUDIO, MessageType.VIDEO):
        seconds = probe_seconds(media.data, use_av=False)
    return Media(mimetype=media.mimetype, file_name=media.file_name, size=len(media.data), seconds=seconds)


def voice_note_info(note: VoiceNote) -> Media:
    """How a sent voice note is stored and shown."""
    return Media(mimetype=note.mimetype, size=len(note.ogg), seconds=note.seconds, ptt=True)
