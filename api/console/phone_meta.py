"""The console's phone metadata, from the `phonenumbers` library: an ES module made once per process.

The console formats and checks numbers in the browser, as the server does (`phonenumbers`), without a
build step or a CDN: this module hands it the same metadata, reduced to what formatting a number
internationally and checking a pasted one need (libphonenumber's patterns are plain regular
expressions that JavaScript reads as they are).
"""

from __future__ import annotations

import json
import re
from functools import cache

import phonenumbers
from phonenumbers import NumberFormat, PhoneMetadata

_GROUP = re.compile(r"\\(\d)")  # libphonenumber's `\1` is JavaScript's `$1`


def _formats(meta: PhoneMetadata) -> list[list[str]]:
    """[pattern, format, leading digits or ""] in the order libphonenumber tries them for an
    international format (its own list when it has one; "NA" ones are never used internationally)."""
    chosen: list[NumberFormat] = list(meta.intl_number_format) or list(meta.number_format)
    return [
        [f.pattern or "", _GROUP.sub(r"$\1", f.format or ""), (f.leading_digits_pattern or [""])[-1]]
        for f in chosen
        if f.format and f.format != "NA"
    ]


def _code_metadata(code: int) -> PhoneMetadata | None:
    region = phonenumbers.region_code_for_country_code(code)
    if region == "001":
        return PhoneMetadata.metadata_for_nongeo_region(code)
    return PhoneMetadata.metadata_for_region(region)


_TYPES = (
    "fixed_line",
    "mobile",
    "toll_free",
    "premium_rate",
    "shared_cost",
    "personal_number",
    "voip",
    "pager",
    "uan",
    "voicemail",
)


def _valid(meta: PhoneMetadata) -> str:
    """The patterns of every kind of number the region has, as one: what tells regions that share a
    calling code apart (libphonenumber's region_code_for_number)."""
    patterns = [getattr(meta, kind).national_number_pattern for kind in _TYPES if getattr(meta, kind)]
    return "|".join(f"(?:{p})" for p in patterns if p)


def metadata() -> dict[str, object]:
    """`codes`: calling code → its formats (its main region's, as libphonenumber formats);
    `main`: calling code → the region libphonenumber names first for it (+1: US, +44: GB);
    `regions`: [region, calling code, national prefix, possible lengths, national number pattern, and
    for a code several regions share, the pattern of its valid numbers]."""
    codes: dict[str, list[list[str]]] = {}
    for code in sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE):
        meta = _code_metadata(code)
        if meta is not None:
            codes[str(code)] = _formats(meta)
    shared = {r for rs in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.values() if len(rs) > 1 for r in rs}
    regions = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        meta = PhoneMetadata.metadata_for_region(region)
        desc = meta.general_desc if meta is not None else None
        if meta is None or desc is None:
            continue
        regions.append(
            [
                region,
                str(meta.country_code),
                meta.national_prefix or "",
                list(desc.possible_length or ()),
                desc.national_number_pattern or "",
                _valid(meta) if region in shared else "",
            ]
        )
    main = {str(code): regions[0] for code, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items()}
    return {"version": phonenumbers.__version__, "codes": codes, "main": main, "regions": regions}


@cache
def phone_meta_module() -> bytes:
    """`export const META = {...};`: the metadata as an ES module."""
    body = json.dumps(metadata(), separators=(",", ":"), ensure_ascii=True)
    return f"// Made by api/console/phone_meta.py from phonenumbers.\nexport const META = {body};\n".encode()
