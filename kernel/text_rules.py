"""What WhatsApp takes as a text and as a reaction, and how long a send may type first: checked by the
API's schemas and by the session."""

from __future__ import annotations

import unicodedata

from kernel.errors import InvalidInput

MAX_TEXT = 65_536
MAX_TYPING_MS = 10_000  # "typing…" before a send: well inside the API's send timeout
MAX_EMOJI_CODEPOINTS = 16  # the longest emoji sequences (families with skin tones) are about 11


def check_emoji(emoji: str) -> str:
    """`emoji` if it is "" (remove) or looks like one emoji sequence; InvalidInput otherwise."""
    if emoji == "":
        return emoji
    bad = any(
        (ch.isascii() and (ch.isalpha() or ch.isspace()))
        or unicodedata.category(ch) in ("Cc", "Zs", "Zl", "Zp")
        for ch in emoji
    )
    if bad or len(emoji) > MAX_EMOJI_CODEPOINTS:
        raise InvalidInput('emoji must be one emoji, or "" to remove your reaction')
    return emoji
