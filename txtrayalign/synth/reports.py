"""Write a study's free-text report in the exact MIMIC-CXR format from its labels.

Format (as /work/shared/testdata/reports/mimic_example_report.txt): first line 33 spaces and
`FINAL REPORT`; every other line starts with one space; a blank line is a single space; lines are
wrapped at 79 characters; PHI is `___`; sections EXAMINATION, INDICATION, TECHNIQUE, COMPARISON,
FINDINGS, IMPRESSION; sometimes an addendum first, closed by a line of underscores.

The label-bearing section (impression, else findings, else the last paragraph) states every
observation with a value and nothing else; the other sections only say true things.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

import numpy as np

from txtrayalign.synth import phrases
from txtrayalign.synth.labels import NO_FINDING, Finding, StudyLabels

WIDTH = 79  # characters per line, leading space included
HEADER = " " * 33 + "FINAL REPORT"
RULE = " " + "_" * (WIDTH - 1)

# Section layout shares: 83% impression (some without findings), 12% findings only, 5% neither.
P_IMPRESSION = 0.83
P_FINDINGS_ONLY = 0.12
P_NO_FINDINGS_GIVEN_IMPRESSION = 0.2
P_ADDENDUM = 0.06

_ORDER = ["Support Devices", "Pneumothorax", "Pleural Effusion", "Consolidation", "Pneumonia", "Lung Opacity",
          "Edema", "Atelectasis", "Cardiomegaly", "Enlarged Cardiomediastinum", "Lung Lesion", "Pleural Other",
          "Fracture"]


@dataclass
class Statement:
    """One sentence of the label-bearing section and what it states."""

    observations: list[str]
    value: float
    sentence: str


@dataclass
class ReportRecord:
    """What was written: the text, which section bears the labels, and its statements."""

    text: str
    label_section: str  # "impression", "findings" or "last_paragraph"
    label_text: str
    statements: list[Statement] = field(default_factory=list)
    sections: dict[str, str] = field(default_factory=dict)


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def wrap(text: str, first_prefix: str = "") -> list[str]:
    """Wrap `text` into report lines: one leading space, at most WIDTH characters each."""
    wrapper = textwrap.TextWrapper(width=WIDTH - 1, break_long_words=False, break_on_hyphens=False,
                                   initial_indent=first_prefix)
    return [" " + line for line in wrapper.wrap(text)] or [" " + first_prefix.rstrip()]


def label_statements(labels: StudyLabels, rng: np.random.Generator) -> list[Statement]:
    """The sentences of the label-bearing section: every valued observation, nothing else."""
    out: list[Statement] = []
    if labels.no_finding:
        out.append(Statement([NO_FINDING], 1.0, _pick(rng, phrases.NO_FINDING_SENTENCES)))
    ordered = [labels.findings[o] for o in _ORDER if o in labels.findings]
    for f in ordered:
        if f.value == 1.0:
            out.extend(Statement([f.observation], 1.0, s) for s in phrases.affirm(f, rng))
        elif f.value == -1.0:
            out.append(Statement([f.observation], -1.0, phrases.hedge(f, rng)))
    negated = [f for f in ordered if f.value == 0.0]
    for observations, sentence in phrases.negations(negated, rng):
        out.append(Statement(observations, 0.0, sentence))
    return out


def descriptive_sentences(labels: StudyLabels, rng: np.random.Generator) -> list[str]:
    """A findings section that is not label-bearing: true statements, in a different wording."""
    sentences: list[str] = []
    for o in _ORDER:
        f = labels.findings.get(o)
        if f is None or not f.present:
            continue
        sentences.extend(phrases.affirm(f, rng) if f.value == 1.0 else [phrases.hedge(f, rng)])
    absent = [o for o in ("Cardiomegaly", "Pleural Effusion", "Pneumothorax", "Consolidation", "Edema")
              if o not in labels.findings or not labels.findings[o].present]
    keep = [Finding(o, 0.0, side="left") for o in absent if rng.random() < 0.5]
    sentences.extend(s for _, s in phrases.negations(keep, rng))
    if rng.random() < 0.5:
        sentences.append(_pick(rng, phrases.NEUTRAL_SENTENCES))
    return sentences


def _paragraph(sentences: list[str]) -> str:
    return "  ".join(sentences)


_INDICATIONS = [
    "___ year old {sex} with shortness of breath  // eval for acute process",
    "___ year old {sex} with cough and fever  // ?pneumonia",
    "___-year-old {sex} with chest pain.",
    "History: ___ with dyspnea",
    "___ year old {sex} s/p line placement  // line position",
    "___ year old {sex} with hypoxia  // ?edema",
    "___ year old {sex} with fall  // eval for injury",
    "Preoperative evaluation.",
]
_COMPARISONS = ["___", "None.", "Chest radiograph from ___.", "Prior study ___"]
_ADDENDA = [
    "Findings were discussed with Dr. ___ by telephone at ___ on ___, at the time of discovery.",
    "The findings were communicated to the referring physician ___ at ___ on ___.",
    "Recommend follow-up radiograph after treatment.",
]


def exam_names(views: list[str], portable: bool) -> tuple[str, str]:
    """(EXAMINATION text, TECHNIQUE text) for the study's views."""
    frontal = "AP" if "AP" in views else "PA"
    has_lat = "LATERAL" in views
    if portable:
        return "CHEST (PORTABLE AP)", "Portable AP chest radiograph"
    if has_lat:
        return f"CHEST ({frontal} AND LAT)", f"Chest {frontal} and lateral"
    return f"CHEST ({frontal})", f"Chest {frontal}"


def write_report(labels: StudyLabels, views: list[str], portable: bool, rng: np.random.Generator) -> ReportRecord:
    """The report text and the record of what its label-bearing section says."""
    statements = label_statements(labels, rng)
    label_par = _paragraph([s.sentence for s in statements])
    u = rng.random()
    layout = "impression" if u < P_IMPRESSION else "findings" if u < P_IMPRESSION + P_FINDINGS_ONLY else "last_paragraph"
    with_findings = layout == "findings" or (layout == "impression" and rng.random() >= P_NO_FINDINGS_GIVEN_IMPRESSION)
    exam, technique = exam_names(views, portable)
    sex = _pick(rng, ["man", "woman"])
    sections: dict[str, str] = {}
    lines = [HEADER]
    if rng.random() < P_ADDENDUM:
        sections["addendum"] = _pick(rng, _ADDENDA)
        lines += wrap(sections["addendum"], "ADDENDUM:  ") + [" ", RULE, " "]
    head = [("EXAMINATION", exam), ("INDICATION", _pick(rng, _INDICATIONS).format(sex=sex)),
            ("TECHNIQUE", technique), ("COMPARISON", _pick(rng, _COMPARISONS))]
    if layout == "last_paragraph" and rng.random() < 0.5:
        head = head[1:2] + head[3:]  # free-text reports often skip the examination lines
    for name, body in head:
        sections[name.lower()] = body
        lines += wrap(body, f"{name}:  ") + [" "]
    if layout == "last_paragraph":
        intro = _pick(rng, ["Frontal and lateral views of the chest were obtained.",
                            "Single portable view of the chest.", "Comparison is made to the prior study."])
        sections["last_paragraph"] = label_par
        lines += wrap(intro) + [" "] + wrap(label_par)
    else:
        if with_findings:
            findings = label_par if layout == "findings" else _paragraph(descriptive_sentences(labels, rng))
            sections["findings"] = findings
            lines += [" FINDINGS: ", " "] + wrap(findings)
        if layout == "impression":
            if with_findings:
                lines.append(" ")
            sections["impression"] = label_par
            lines += [" IMPRESSION: ", " "] + wrap(label_par)
    return ReportRecord("\n".join(lines) + "\n", layout, label_par, statements, sections)


def observations_stated(record: ReportRecord) -> dict[str, float]:
    """observation -> value as the record's label-bearing statements give it."""
    out: dict[str, float] = {}
    for st in record.statements:
        for o in st.observations:
            out[o] = st.value
    return out
