"""Sentence splitting that survives radiology report text.

Handles hard line wraps (joined before splitting), numbered lists ("1. ... 2. ..." inline or one per
line), bullet lines ("- ", "* ", "•"), decimals and sizes ("3.5 cm", "1.2 x 2.3 cm"), abbreviations
(Dr., e.g., i.e., approx., vs., No. 2 ...) and MIMIC's `___` PHI placeholder.
"""

from __future__ import annotations

import re

# A line that starts a new item rather than continuing the previous line.
_ITEM_START = re.compile(r"^(?:\d{1,2}\s*[.)](?=\s|$)|[-*\u2022\u25cf]\s)")
# List markers removed from the start of a sentence.
_LEADING_MARKER = re.compile(r"^\s*(?:\(?\d{1,2}\s*[.)]|[-*\u2022\u25cf])\s+")
# Inline numbered items: "... effusion. 2. Cardiomegaly" or "1. Stable" at the very start.
_INLINE_ITEM = re.compile(r"(?:(?<=^)|(?<=[.:;!?]\s)|(?<=[.:;!?]\s\s))\(?\d{1,2}[.)]\s+(?=\S)")
# Candidate sentence ends: terminal punctuation (runs allowed) followed by whitespace or the end.
# Possessive and anchored at the start of a run, so a run of punctuation is scanned once.
_END = re.compile(r"(?<![.!?])[.!?]++(?=\s|$)")

# Words whose trailing period does not end a sentence (lower case, without the final period).
ABBREVIATIONS: frozenset[str] = frozenset(
    """
    dr mr mrs ms prof st e.g eg i.e ie approx appr vs v etc cf al fig figs incl est min max
    resp esp ca c.f a.k.a aka p.o b.i.d t.i.d q.d sr jr ft lt rt l.l.q r.u.q pt pts hx dx tx sx
    """.split()
)
# Abbreviations that are abbreviations only before a number ("No. 2", "Fig. 3", "pg. 4").
_BEFORE_NUMBER = frozenset({"no", "nos", "nr", "pg", "p", "vol", "ref"})


def unwrap(text: str) -> list[str]:
    """Join hard-wrapped lines into logical lines.

    A blank line ends a paragraph; a line starting with a list marker ("1.", "2)", "- ", "* ")
    starts a new logical line; any other line continues the previous one.
    """
    logical: list[str] = []
    current: list[str] = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = " ".join(raw.split())
        if not line:
            if current:
                logical.append(" ".join(current))
                current = []
            continue
        if current and _ITEM_START.match(line):
            logical.append(" ".join(current))
            current = []
        current.append(line)
    if current:
        logical.append(" ".join(current))
    return logical


_WORD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.")


def _word_before(segment: str, stop: int) -> str | None:
    """The run of ASCII letters and periods ending at segment[stop - 1], from its first letter.

    Scans backwards from `stop`, so each call costs the length of that word, not of the segment.
    """
    start = stop
    while start > 0 and segment[start - 1] in _WORD_CHARS:
        start -= 1
    while start < stop and segment[start] == ".":
        start += 1
    return segment[start:stop] if start < stop else None


def _next_char(segment: str, start: int) -> str:
    """The first non-whitespace character at or after `start` ("" when there is none)."""
    end = len(segment)
    while start < end and segment[start].isspace():
        start += 1
    return segment[start] if start < end else ""


def _is_abbreviation(segment: str, end: int, punct: str) -> bool:
    """True when the period at segment[end - 1] belongs to an abbreviation, not a sentence end."""
    if punct != ".":
        return False
    found = _word_before(segment, end - 1)
    if found is None:
        return False
    word = found.lower().rstrip(".")
    if word in ABBREVIATIONS:
        return True
    nxt = _next_char(segment, end)
    if word in _BEFORE_NUMBER and nxt.isdigit():
        return True
    # Dotted abbreviations ("p.m.", "a.m.", "b.i.d.") continue when the next word is lower case.
    if "." in word and nxt.islower():
        return True
    # Single initials ("J. Smith") but not single-letter words that end sentences in reports
    # (e.g. "... zone B." is rare; "x." as in "1.2 x." never occurs).
    if len(word) == 1 and word not in {"a", "i"} and nxt.isupper() and found.isupper():
        return True
    return False


def _split_segment(segment: str) -> list[str]:
    out: list[str] = []
    start = 0
    for m in _END.finditer(segment):
        end = m.end()
        if _is_abbreviation(segment, end, m.group(0)[-1]):
            continue
        piece = segment[start:end].strip()
        if piece:
            out.append(piece)
        start = end
    tail = segment[start:].strip()
    if tail:
        out.append(tail)
    return out


def _clean(sentence: str) -> str:
    marker = _LEADING_MARKER.match(sentence)
    return (sentence[marker.end():] if marker else sentence).strip()


def split_sentences(text: str) -> list[str]:
    """Split report text into sentences (list markers removed, whitespace collapsed).

    Pieces that hold no letter or digit (a lone "." or "___") are dropped.
    """
    if not text or not text.strip():
        return []
    sentences: list[str] = []
    for line in unwrap(text):
        # Break inline numbered items apart first ("1. A. 2. B." -> "1. A.", "2. B.").
        starts = [m.start() for m in _INLINE_ITEM.finditer(line)]
        bounds = sorted(set([0, *starts, len(line)]))
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            item = _clean(line[a:b])
            for sentence in _split_segment(item):
                sentence = _clean(sentence)
                if any(ch.isalnum() for ch in sentence.replace("___", "")):
                    sentences.append(sentence)
    return sentences
