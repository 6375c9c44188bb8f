"""Structure walkers for the containers whose magic alone does not say audio or video (pure Python)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Literal

# ---- ISO base media (MP4, MOV, 3GP, M4A): boxes of (size, type, payload) -------------------------


def iso_boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of each box in data[start:end]; a truncated box ends the walk."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        header = 8
        if size == 1:
            if pos + 16 > end:
                return
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
            header = 16
        elif size == 0:
            size = end - pos
        if size < header:
            return
        yield kind, pos + header, min(pos + size, end)
        pos += size


def _child(data: bytes, start: int, end: int, kind: bytes) -> Iterator[tuple[int, int]]:
    for box, lo, hi in iso_boxes(data, start, end):
        if box == kind:
            yield lo, hi


def iso_handlers(data: bytes) -> set[bytes]:
    """The handler types of the tracks (`vide`, `soun`, ...) in the file's `moov` box."""
    handlers: set[bytes] = set()
    for moov in _child(data, 0, len(data), b"moov"):
        for trak in _child(data, *moov, b"trak"):
            for mdia in _child(data, *trak, b"mdia"):
                for lo, hi in _child(data, *mdia, b"hdlr"):
                    if hi - lo >= 12:
                        handlers.add(data[lo + 8 : lo + 12])
    return handlers


def iso_duration(data: bytes) -> float | None:
    """The movie duration in seconds from `moov/mvhd`, if present."""
    for moov in _child(data, 0, len(data), b"moov"):
        for lo, hi in _child(data, *moov, b"mvhd"):
            # Version 1 has 64-bit times and duration; all-ones duration means unknown (fragmented).
            layout, unknown = (">16xIQ", 2**64 - 1) if data[lo] == 1 else (">12xII", 2**32 - 1)
            if hi - lo < struct.calcsize(layout):
                return None
            scale, duration = struct.unpack_from(layout, data, lo)
            return duration / scale if scale and duration not in (0, unknown) else None
    return None


def wav_duration(data: bytes) -> float | None:
    """The duration in seconds of a RIFF/WAVE file from its `fmt ` and `data` chunks."""
    byte_rate, pos = 0, 12
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if chunk == b"fmt " and size >= 12:
            byte_rate = int.from_bytes(data[pos + 16 : pos + 20], "little")
        elif chunk == b"data":
            # Streaming writers leave the size at 0 or all-ones: the data then runs to the end.
            available = len(data) - pos - 8
            size = available if size in (0, 0xFFFFFFFF) or size > available else size
            return size / byte_rate if byte_rate else None
        pos += 8 + size + (size & 1)
    return None


# ---- EBML (Matroska, WebM) -----------------------------------------------------------------------

_EBML_HEADER, _DOCTYPE = 0x1A45DFA3, 0x4282
_SEGMENT, _TRACKS, _TRACK_ENTRY, _TRACK_TYPE, _CLUSTER = 0x18538067, 0x1654AE6B, 0xAE, 0x83, 0x1F43B675


def _vint(data: bytes, pos: int, *, marker: bool) -> tuple[int | None, int] | None:
    """(value, next position) of the EBML variable-size integer at `pos`; value None means unknown size."""
    if pos >= len(data) or data[pos] == 0:
        return None
    length = 9 - data[pos].bit_length()
    if pos + length > len(data):
        return None
    value = int.from_bytes(data[pos : pos + length], "big")
    if marker:
        return value, pos + length
    bits = (1 << (7 * length)) - 1
    value &= bits
    return (None if value == bits else value), pos + length


def _elements(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int | None]]:
    """(id, payload start, payload end or None for unknown size) of each element in data[start:end]."""
    pos = start
    while pos < end:
        ident = _vint(data, pos, marker=True)
        if ident is None or ident[0] is None:
            return
        size = _vint(data, ident[1], marker=False)
        if size is None:
            return
        length, lo = size
        yield ident[0], lo, None if length is None else lo + length
        if length is None:
            return
        pos = lo + length


def ebml_tracks(data: bytes) -> tuple[str | None, set[int]]:
    """The DocType (`webm`, `matroska`) and the track types (1 video, 2 audio) of a Matroska file."""
    doctype: str | None = None
    types: set[int] = set()
    for ident, lo, hi in _elements(data, 0, len(data)):
        end = len(data) if hi is None else min(hi, len(data))
        if ident == _EBML_HEADER:
            for child, clo, chi in _elements(data, lo, end):
                if child == _DOCTYPE and chi is not None:
                    doctype = data[clo:chi].decode("ascii", "replace")
        elif ident == _SEGMENT:
            for child, clo, chi in _elements(data, lo, end):
                if child == _CLUSTER:
                    break  # tracks come before the first cluster
                if child == _TRACKS:
                    types |= _track_types(data, clo, len(data) if chi is None else min(chi, len(data)))
            break
    return doctype, types


def _track_types(data: bytes, start: int, end: int) -> set[int]:
    types: set[int] = set()
    for entry, lo, hi in _elements(data, start, end):
        if entry == _TRACK_ENTRY and hi is not None:
            for field, flo, fhi in _elements(data, lo, min(hi, end)):
                if field == _TRACK_TYPE and fhi is not None:
                    types.add(int.from_bytes(data[flo:fhi], "big"))
    return types


# ---- MPEG audio and ADTS frame headers -----------------------------------------------------------

_MPEG_BITRATES = {  # kb/s by (MPEG-1?, layer), index 1..14
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def mpeg_audio_frame_length(data: bytes, pos: int) -> int | None:
    """Length of the MPEG audio (MP1/2/3) frame whose header is at `pos`, or None if none is there."""
    if pos + 4 > len(data) or data[pos] != 0xFF or data[pos + 1] & 0xE0 != 0xE0:
        return None
    version, layer_bits = (data[pos + 1] >> 3) & 3, (data[pos + 1] >> 1) & 3
    bitrate_index, rate_index = data[pos + 2] >> 4, (data[pos + 2] >> 2) & 3
    if version == 1 or layer_bits == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    layer, mpeg1, padding = 4 - layer_bits, version == 3, (data[pos + 2] >> 1) & 1
    bitrate = _MPEG_BITRATES[mpeg1, layer][bitrate_index - 1] * 1000
    rate = _MPEG_RATES[version][rate_index]
    if layer == 1:
        return (12 * bitrate // rate + padding) * 4
    return (144 if layer == 2 or mpeg1 else 72) * bitrate // rate + padding


def adts_frame_length(data: bytes, pos: int) -> int | None:
    """Length of the ADTS (AAC) frame whose header is at `pos`, or None if none is there."""
    if pos + 7 > len(data) or data[pos] != 0xFF or data[pos + 1] & 0xF6 != 0xF0:
        return None
    if (data[pos + 2] >> 2) & 0xF > 12:
        return None
    length = ((data[pos + 3] & 3) << 11) | (data[pos + 4] << 3) | (data[pos + 5] >> 5)
    return length if length >= 7 else None


def frames_in_sync(data: bytes, pos: int, kind: Literal["mpeg", "adts"]) -> bool:
    """True if a frame header is at `pos` and, unless the data ends first, another one follows it."""
    measure = mpeg_audio_frame_length if kind == "mpeg" else adts_frame_length
    length = measure(data, pos)
    if length is None:
        return False
    return pos + length + 4 > len(data) or measure(data, pos + length) is not None
