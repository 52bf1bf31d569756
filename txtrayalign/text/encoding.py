"""How report bytes become text: one decoding policy for every reader of report files.

Accepted: UTF-8, UTF-8 with a byte-order mark, UTF-16 (LE or BE) with a byte-order mark. Refused,
with a reason: bytes that are not valid in the encoding they claim (or, without a BOM, not valid
UTF-8: Latin-1 and UTF-16 without a BOM land here or below) and text holding NUL characters (what
UTF-16 without a BOM, or a binary file, looks like when read as UTF-8). Nothing is guessed: a
refused report is reported, never decoded with replacement characters and labelled.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from txtrayalign.errors import InputError

# (byte-order mark, codec). UTF-32 is not accepted: its LE mark reads as UTF-16 LE + NULs (refused).
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Problem kinds decode_report returns.
NOT_UTF8 = "not_utf8"
BAD_ENCODING = "bad_encoding"
NUL_BYTES = "nul_bytes"


def decode_report(raw: bytes) -> tuple[str, tuple[str, str] | None]:
    """(text, None) for bytes the policy accepts, else ("", (kind, reason)).

    kind is `not_utf8` (no BOM and not valid UTF-8), `bad_encoding` (a BOM names an encoding the
    bytes are not valid in) or `nul_bytes` (the decoded text holds NUL characters).
    """
    codec, bom = "utf-8", b""
    for mark, name in _BOMS:
        if raw.startswith(mark):
            codec, bom = name, mark
            break
    try:
        text = raw[len(bom):].decode(codec)
    except UnicodeDecodeError as exc:
        where = exc.start + len(bom)
        if bom:
            return "", (BAD_ENCODING, f"starts with a {codec.upper()} byte-order mark but is not valid "
                                      f"{codec.upper()} ({exc.reason} at byte {where})")
        return "", (NOT_UTF8, f"not valid UTF-8 ({exc.reason} at byte {where}); save it as UTF-8, or "
                              "as UTF-16 with a byte-order mark")
    nul = text.find("\x00")
    if nul >= 0:
        hint = "" if bom else "; UTF-16 without a byte-order mark?"
        return "", (NUL_BYTES, f"{text.count(chr(0))} NUL character(s), the first at character {nul} "
                               f"(read as {codec.upper()}{hint})")
    return text, None


def read_text(path: str | Path) -> str:
    """The text of a file decoded by the policy above; InputError naming the file when refused."""
    path = Path(path)
    text, problem = decode_report(path.read_bytes())
    if problem is not None:
        raise InputError(f"{path}: {problem[1]}")
    return text
