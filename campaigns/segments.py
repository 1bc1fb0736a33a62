"""How many SMS segments a text costs: GSM-7 (160, then 153 per part) or UCS-2 (70, then 67)."""

from dataclasses import dataclass

# GSM 03.38 basic character set.
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: each costs an escape plus the character, so two units.
GSM_EXTENDED = frozenset("^{}\\[~]|€\f")


@dataclass(frozen=True)
class SegmentCount:
    encoding: str  # "GSM-7" or "UCS-2"
    characters: int
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int
    per_segment: int
    remaining: int  # units left in the last segment


def count_segments(text: str) -> SegmentCount:
    """Counts the segments of text as a carrier would bill them."""
    if all(c in GSM_BASIC or c in GSM_EXTENDED for c in text):
        encoding, single, multi = "GSM-7", 160, 153
        units = sum(2 if c in GSM_EXTENDED else 1 for c in text)
    else:
        encoding, single, multi = "UCS-2", 70, 67
        # Characters outside the BMP (most emoji) take a surrogate pair.
        units = sum(2 if ord(c) > 0xFFFF else 1 for c in text)
    if units <= single:
        segments, per_segment = (1 if units else 0), single
    else:
        segments, per_segment = -(-units // multi), multi
    capacity = max(segments, 1) * per_segment
    return SegmentCount(encoding, len(text), units, segments, per_segment, capacity - units)
