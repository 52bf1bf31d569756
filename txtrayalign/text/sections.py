"""Split a free-text radiology report (MIMIC-CXR layout) into named sections.

Headers are words followed by a colon at the start of a line ("IMPRESSION:", "FINDINGS AND
IMPRESSION:", "Impression:"); text may follow on the same line. Known headers are mapped to a
normalised name (CONCLUSION -> impression, REASON FOR EXAM -> indication, ...); other upper-case
headers that open a paragraph are kept under their own normalised name. An addendum placed before
the report and closed by a line of underscores becomes the `addendum` section.

Known impression and findings headers are also recognised alone on an upper-case line without a
colon ("IMPRESSION"), where nothing else could be meant.

`label_text` is what the official MIMIC-CXR CheXpert labels were computed on: the impression, else
the findings, else the report's last paragraph.

The training text (`text.train_section`): `impression`, `findings`, `both` (findings then
impression), `report` (the whole text, header labels removed) or `auto`, CheXpert's rule for the
text it labels with unsectioned text as one section: the impression, else the findings, else the
last paragraph of a report with headers, else (a caption, a clinical note: no header at all) the
whole text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from txtrayalign.text.sentences import unwrap

# The sections written as columns of sections.parquet, in order.
SECTION_COLUMNS: list[str] = [
    "examination",
    "indication",
    "history",
    "technique",
    "comparison",
    "findings",
    "impression",
    "addendum",
    "last_paragraph",
]
TRAIN_SECTIONS: tuple[str, ...] = ("impression", "findings", "both", "auto", "report")

# Header text (upper case, single spaces) -> normalised section name(s).
_KNOWN_HEADERS: dict[str, tuple[str, ...]] = {}


def _add(names: str, *targets: str) -> None:
    for name in names.split("|"):
        _KNOWN_HEADERS[name] = targets


_add("EXAMINATION|EXAM|EXAMINATIONS|STUDY|TYPE OF EXAMINATION|PROCEDURE|EXAMINATION TITLE", "examination")
_add(
    "INDICATION|INDICATIONS|REASON FOR EXAM|REASON FOR EXAMINATION|REASON FOR STUDY|CLINICAL INDICATION"
    "|CLINICAL INDICATIONS|REASON|REASON FOR REFERRAL",
    "indication",
)
_add("HISTORY|CLINICAL HISTORY|MEDICAL HISTORY|CLINICAL INFORMATION|CLINICAL DATA|HX", "history")
_add("TECHNIQUE|TECHNIQUES|VIEWS|VIEW", "technique")
_add(
    "COMPARISON|COMPARISONS|COMPARISON STUDY|COMPARISON STUDIES|COMPARISON EXAM|PRIOR|PRIOR STUDIES"
    "|PRIOR STUDY|COMPARED WITH|COMPARE",
    "comparison",
)
_add("FINDINGS|FINDING|FINDINGS/COMMENTS|REPORT|DESCRIPTION", "findings")
_add("IMPRESSION|IMPRESSIONS|CONCLUSION|CONCLUSIONS|SUMMARY|OPINION|DIAGNOSIS|INTERPRETATION", "impression")
_add(
    "FINDINGS AND IMPRESSION|FINDINGS/IMPRESSION|FINDINGS & IMPRESSION|IMPRESSION AND FINDINGS"
    "|IMPRESSION/FINDINGS|FINDINGS AND IMPRESSIONS|FINDINGS/IMPRESSIONS|FINDINGS AND CONCLUSION"
    "|FINDINGS/CONCLUSION|FINDINGS AND CONCLUSIONS",
    "findings",
    "impression",
)
_add("ADDENDUM|ADDENDA|ADDENDUM #1|ADDENDUM 1", "addendum")

# Headers recognised without a colon when they are a whole upper-case line: only the sections whose
# name a sentence of a report never is ("IMPRESSION", "FINDINGS AND IMPRESSION").
_BARE_HEADERS = frozenset(name for name, targets in _KNOWN_HEADERS.items()
                          if set(targets) <= {"findings", "impression"} and name not in ("REPORT", "DESCRIPTION",
                                                                                         "SUMMARY", "DIAGNOSIS"))

# "HEADER: text" at the start of a line. Letters, spaces, '/', '&', '#', digits after the first word.
_HEADER = re.compile(r"^\s*([A-Za-z][A-Za-z0-9/&#()' -]{0,48}?)\s*:(?!\d)\s*(.*)$")
# Title and bar lines are matched on the stripped line: two `\s*` around an optional word would
# backtrack quadratically on a long line of spaces.
_TITLE = re.compile(r"(?:(?:FINAL|PRELIMINARY)\s*)?(?:REPORT|ADDENDUM)", re.IGNORECASE)
_UNDERSCORES = re.compile(r"_{5,}")


def _is_title(line: str) -> bool:
    return _TITLE.fullmatch(line.strip()) is not None


def _is_bar(line: str) -> bool:
    return _UNDERSCORES.fullmatch(line.strip()) is not None


@dataclass
class ReportSections:
    """The sections of one report. `sections` holds every section found, by normalised name."""

    sections: dict[str, str] = field(default_factory=dict)
    last_paragraph: str = ""
    report: str = ""  # the whole text, paragraph by paragraph, header labels removed
    sectioned: bool = False  # whether any header was found

    def get(self, name: str) -> str:
        if name == "last_paragraph":
            return self.last_paragraph
        if name == "report":
            return self.report
        return self.sections.get(name, "")

    @property
    def label_text(self) -> str:
        return self.get("impression") or self.get("findings") or self.last_paragraph

    @property
    def auto_section(self) -> str:
        """The section `auto` trains on: impression, else findings, else the last paragraph of a report
        with headers, else (a report without any: one section) the whole text."""
        for name in ("impression", "findings"):
            if self.get(name):
                return name
        return "last_paragraph" if self.sectioned else "report"

    def train_parts(self, train_section: str) -> list[tuple[str, str]]:
        """(section, text) pairs that make up the training text, in order, empty ones left out."""
        if train_section not in TRAIN_SECTIONS:
            raise ValueError(f"train section must be one of {TRAIN_SECTIONS}, got {train_section!r}")
        names = {"both": ("findings", "impression"), "auto": (self.auto_section,)}.get(train_section,
                                                                                         (train_section,))
        parts: list[tuple[str, str]] = []
        for name in names:
            text = self.get(name)
            # "FINDINGS AND IMPRESSION" fills both sections with the same text: keep it once.
            if text and all(text != seen for _, seen in parts):
                parts.append((name, text))
        return parts

    def train_text(self, train_section: str) -> str:
        return "\n".join(text for _, text in self.train_parts(train_section))


def normalise_header(header: str) -> str:
    """'Findings and  Impression' -> 'findings_and_impression' (a name for an unknown header)."""
    return re.sub(r"[^a-z0-9]+", "_", header.lower()).strip("_")


def _header_targets(line: str, opens_paragraph: bool) -> tuple[tuple[str, ...], str] | None:
    """The section names a header line opens and the text after the colon, or None."""
    bare = " ".join(line.split())
    if bare.isupper() and bare.rstrip(":").strip() in _BARE_HEADERS:
        return _KNOWN_HEADERS[bare.rstrip(":").strip()], ""
    m = _HEADER.match(line)
    if not m:
        return None
    name, rest = m.group(1), m.group(2)
    key = " ".join(name.upper().split())
    if key in _KNOWN_HEADERS:
        return _KNOWN_HEADERS[key], rest
    # An unknown header counts only when it is upper case, opens a paragraph and reads like a label.
    if opens_paragraph and name.isupper() and len(key.replace(" ", "")) >= 4 and len(key.split()) <= 5:
        return (normalise_header(key),), rest
    return None


def _join(lines: list[str]) -> str:
    return "\n".join(unwrap("\n".join(lines))).strip()


def _parse_body(lines: list[str]) -> tuple[dict[str, str], list[list[str]]]:
    """Sections of a block of lines, and its paragraphs (header labels removed) in order; a header
    without a body still names its section (with no text)."""
    collected: dict[str, list[str]] = {}
    order: list[tuple[tuple[str, ...], list[str]]] = []
    current: list[str] | None = None
    paragraphs: list[list[str]] = []
    paragraph: list[str] = []
    previous_blank = True
    for line in lines:
        if not line.strip():
            if paragraph:
                paragraphs.append(paragraph)
                paragraph = []
            previous_blank = True
            if current is not None:
                current.append("")
            continue
        found = _header_targets(line, previous_blank)
        previous_blank = False
        if found is not None:
            targets, rest = found
            if paragraph:
                paragraphs.append(paragraph)
                paragraph = []
            current = []
            order.append((targets, current))
            if rest.strip():
                current.append(rest)
                paragraph.append(rest)
            continue
        paragraph.append(line)
        if current is not None:
            current.append(line)
    if paragraph:
        paragraphs.append(paragraph)
    for targets, body in order:
        for target in targets:
            collected.setdefault(target, []).extend([*body, ""])
    return {name: _join(body) for name, body in collected.items()}, paragraphs


def _join_paragraphs(paragraphs: list[list[str]]) -> str:
    return "\n".join(text for text in (_join(p) for p in paragraphs) if text)


def extract_sections(text: str) -> ReportSections:
    """Split one report's text into its sections (see the module docstring)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = [line for line in lines if not _is_title(line)]
    addendum_lines: list[str] = []
    bars = [i for i, line in enumerate(lines) if _is_bar(line)]
    if bars:
        # An addendum written above the original report, closed by a line of underscores.
        head, tail = lines[: bars[0]], lines[bars[0] + 1 :]
        head_sections, _ = _parse_body(head)
        if not ({"findings", "impression"} & head_sections.keys()) and any(x.strip() for x in tail):
            addendum_lines, lines = head, [x for x in tail if not _is_bar(x)]
    sections, paragraphs = _parse_body(lines)
    if addendum_lines:
        # Named parts above the bar ("ADDENDUM:", "WET READ:") keep their names; text without a
        # header there is an addendum.
        head_sections, head_paragraphs = _parse_body(addendum_lines)
        if not head_sections:
            head_sections = {"addendum": _join([x for p in head_paragraphs for x in [*p, ""]])}
        for name, body in head_sections.items():
            if body:
                sections[name] = f"{body}\n{sections[name]}" if sections.get(name) else body
    sectioned = bool(sections) or bool(addendum_lines)
    sections = {name: body for name, body in sections.items() if body}
    last = _join(paragraphs[-1]) if paragraphs else ""
    whole = _join_paragraphs((_parse_body(addendum_lines)[1] if addendum_lines else []) + paragraphs)
    return ReportSections(sections=sections, last_paragraph=last, report=whole, sectioned=sectioned)
