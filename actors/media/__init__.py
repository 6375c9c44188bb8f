"""Media handling shared by the WhatsApp adapters and the API: size guards, type sniffing, voice notes.

Import-light: PyAV is loaded only when a conversion or a probe runs (see `actors.media.audio`).
"""

from actors.media.audio import MAX_VOICE_SECONDS, to_voice_note, waveform
from actors.media.limits import AsyncReadable, check_size, limit_stream, read_file_limited, read_limited
from actors.media.ogg import InvalidOgg, OggOpusInfo, inspect_ogg_opus
from actors.media.probe import media_info, probe_seconds, voice_note_info, whole_seconds
from actors.media.sniff import (
    OCTET_STREAM,
    OPUS_OGG,
    WHATSAPP_INLINE,
    Sniffed,
    classify,
    outgoing_media,
    sniff,
)

__all__ = [
    "MAX_VOICE_SECONDS",
    "OCTET_STREAM",
    "OPUS_OGG",
    "WHATSAPP_INLINE",
    "AsyncReadable",
    "InvalidOgg",
    "OggOpusInfo",
    "Sniffed",
    "check_size",
    "classify",
    "inspect_ogg_opus",
    "limit_stream",
    "media_info",
    "outgoing_media",
    "probe_seconds",
    "read_file_limited",
    "read_limited",
    "sniff",
    "to_voice_note",
    "voice_note_info",
    "waveform",
    "whole_seconds",
]
