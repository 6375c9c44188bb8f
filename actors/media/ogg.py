"""A small pure-Python Ogg reader: enough to validate an OGG/Opus voice note (RFC 3533, RFC 7845)."""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterator
from dataclasses import dataclass

OPUS_RATE = 48000  # Opus granule positions always count 48 kHz samples (RFC 7845 §4)

_PAGE_HEADER = struct.Struct("<4sBBqIIIB")  # capture, version, flags, granule, serial, seqno, crc, nsegs
_FLAG_CONTINUED = 0x01
_FLAG_BOS = 0x02


class InvalidOgg(ValueError):
    """The bytes are not a well-formed Ogg/Opus stream."""


@dataclass(frozen=True, slots=True)
class OggOpusInfo:
    channels: int
    input_rate: int
    pre_skip: int
    duration_s: float


@dataclass(frozen=True, slots=True)
class _Page:
    flags: int
    granule: int
    serial: int
    segments: tuple[int, ...]
    body: bytes


@functools.cache
def _crc_table() -> tuple[int, ...]:
    """CRC-32 table for Ogg's checksum (polynomial 0x04C11DB7, MSB first, no reflection)."""
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return tuple(table)


def ogg_crc(data: bytes) -> int:
    """The Ogg page checksum of `data` (computed with the page's CRC field zeroed)."""
    table = _crc_table()
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[(crc >> 24) ^ byte]
    return crc


def _pages(data: bytes, verify_crc: bool) -> Iterator[_Page]:
    pos = 0
    while pos < len(data):
        if len(data) - pos < _PAGE_HEADER.size:
            raise InvalidOgg(f"truncated page header at byte {pos}")
        capture, version, flags, granule, serial, _seq, crc, nsegs = _PAGE_HEADER.unpack_from(data, pos)
        if capture != b"OggS":
            raise InvalidOgg(f"no OggS capture pattern at byte {pos}")
        if version != 0:
            raise InvalidOgg(f"unknown Ogg version {version} at byte {pos}")
        table_end = pos + _PAGE_HEADER.size + nsegs
        segments = tuple(data[pos + _PAGE_HEADER.size : table_end])
        end = table_end + sum(segments)
        if len(segments) != nsegs or end > len(data):
            raise InvalidOgg(f"truncated page at byte {pos}")
        if verify_crc and ogg_crc(data[pos : pos + 22] + bytes(4) + data[pos + 26 : end]) != crc:
            raise InvalidOgg(f"bad page checksum at byte {pos}")
        yield _Page(flags, granule, serial, segments, data[table_end:end])
        pos = end


def _packets(pages: Iterator[_Page], serial: int) -> Iterator[tuple[bytes, int]]:
    """Complete packets of one logical stream, each with the granule of the page it ends on."""
    pending = b""
    for page in pages:
        if page.serial != serial:
            continue
        if pending and not page.flags & _FLAG_CONTINUED:
            raise InvalidOgg("a packet was cut short by the next page")
        offset = 0
        for lacing in page.segments:
            pending += page.body[offset : offset + lacing]
            offset += lacing
            if lacing < 255:
                yield pending, page.granule
                pending = b""


def inspect_ogg_opus(data: bytes, *, verify_crc: bool = True) -> OggOpusInfo:
    """Parse and check an Ogg/Opus file: capture patterns, checksums, OpusHead, OpusTags, duration."""
    pages = list(_pages(data, verify_crc))
    if not pages or not pages[0].flags & _FLAG_BOS:
        raise InvalidOgg("the first page does not begin a stream")
    serial = pages[0].serial
    packets = _packets(iter(pages), serial)
    head, _ = next(packets, (b"", 0))
    if len(head) < 19 or head[:8] != b"OpusHead":
        raise InvalidOgg("the first packet is not an OpusHead")
    version, channels, pre_skip, input_rate = struct.unpack_from("<BBHI", head, 8)
    if version >> 4 != 0 or channels == 0:
        raise InvalidOgg(f"unsupported OpusHead (version {version}, {channels} channels)")
    tags, _ = next(packets, (b"", 0))
    if tags[:8] != b"OpusTags":
        raise InvalidOgg("the second packet is not an OpusTags")
    granules = [p.granule for p in pages if p.serial == serial and p.granule >= 0]
    samples = (granules[-1] if granules else 0) - pre_skip
    if samples < 0:
        raise InvalidOgg("the final granule position is before the pre-skip")
    return OggOpusInfo(
        channels=channels, input_rate=input_rate, pre_skip=pre_skip, duration_s=samples / OPUS_RATE
    )
