"""The text stage as plain functions: read and decode reports, build the sections, sentences and
problems tables (see docs/design.md). `txtrayalign/text/cli.py` is the command line around them.

A study whose report was read but holds no training text (`text.train_section` impression and no
impression section) is a `no_train_text` problem row; when more than `max_empty_share` of the
studies are, `check_train_text` stops the stage naming the setting, the counts and a value that
gives them text.

A report the decoding policy refuses (`txtrayalign.text.encoding`), an empty one and a missing one
are problem rows; their sections, `label_text` and `train_text` are empty and they have no
sentences, so nothing downstream labels them: the label stage gives an empty text no labels at
all (every observation NaN), never "No Finding".
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from txtrayalign.errors import InputError
from txtrayalign.tables import read_table
from txtrayalign.text.encoding import decode_report
from txtrayalign.text.sections import SECTION_COLUMNS, extract_sections
from txtrayalign.text.sentences import split_sentences
from txtrayalign.utils import progress

log = logging.getLogger(__name__)

STUDY_COLUMNS = ["subject_id", "study_id", "report_path", "split"]
PROBLEM_COLUMNS = ["study_id", "path", "kind", "message"]
SENTENCE_COLUMNS = ["sentence_id", "subject_id", "study_id", "split", "section", "position", "sentence"]
SECTIONS_TABLE_COLUMNS = ["subject_id", "study_id", "split", *SECTION_COLUMNS, "label_text", "train_text"]
# sentence_id = study_id * SENTENCE_ID_BASE + index of the sentence within the study's train text.
SENTENCE_ID_BASE = 10_000


def read_report(path: Path) -> tuple[str, tuple[str, str] | None]:
    """The report's text and, when something is wrong with it, (kind, message).

    kind is `missing` (no such file or unreadable), `empty` (nothing but whitespace) or one of the
    decoding problems of `decode_report` (`not_utf8`, `bad_encoding`, `nul_bytes`). With a problem
    the text is "": a report is used whole or not at all.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return "", ("missing", "report file not found")
    except OSError as exc:
        return "", ("missing", f"report file unreadable: {exc}")
    text, problem = decode_report(raw)
    if problem is not None:
        return "", problem
    if not text.strip():
        return "", ("empty", "report is empty")
    return text, None


def load_studies(path: str | Path) -> pd.DataFrame:
    """studies.parquet of the index stage, checked for the columns this stage needs."""
    studies = read_table(path, "index_studies", STUDY_COLUMNS)
    duplicated = studies["study_id"][studies["study_id"].duplicated()]
    if len(duplicated):
        raise InputError(f"{path}: study_id must be unique; repeated: {duplicated.head(5).tolist()}")
    return studies


NO_TRAIN_TEXT = {"impression": "no impression section", "findings": "no findings section",
                 "both": "no findings or impression section", "auto": "no text after the headers",
                 "report": "no text after the headers"}


def check_train_text(sections: pd.DataFrame, problems: pd.DataFrame, train_section: str,
                     max_empty_share: float) -> None:
    """Stop when more than `max_empty_share` of the studies have no training text, naming
    `text.train_section`, the counts and the value that gives them text (`auto`: the `label_text`
    rule, which falls back to the last paragraph and the whole unsectioned text: every study whose
    report was read has one)."""
    studies = len(sections)
    empty = int((problems["kind"] == "no_train_text").sum()) if len(problems) else 0
    if not studies or empty / studies <= max_empty_share:
        return
    example = problems.loc[problems["kind"] == "no_train_text", "path"].iloc[0]
    share = f"{empty} of {studies} studies ({100 * empty / studies:.1f}%, e.g. {example})"
    # `auto` falls back to the last paragraph or the whole text: every report with text has some
    with_text = studies - int(problems.loc[problems["kind"] != "no_train_text", "study_id"].nunique())
    if train_section in ("auto", "report") or with_text == 0:
        advice = "no text.train_section gives them text: look at their reports"
    else:
        advice = f"text.train_section: auto gives {with_text} of {studies} studies a training text"
    raise InputError(
        f"text.train_section = {train_section} (--train-section) leaves {share} without training text "
        f"({NO_TRAIN_TEXT[train_section]}), more than text.max_empty_share = {max_empty_share:g}; {advice}"
    )


def build_tables(studies: pd.DataFrame, root: Path, train_section: str
                 ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """sections, sentences and problems tables for the given studies (see docs/design.md)."""
    section_rows: list[dict] = []
    sentence_rows: list[tuple] = []
    problems: list[dict] = []
    records = studies[STUDY_COLUMNS].itertuples(index=False, name=None)
    for subject_id, study_id, report_path, split in progress(records, "sections", total=len(studies),
                                                             unit="report"):
        text, problem = read_report(root / str(report_path))
        if problem is not None:
            kind, message = problem
            problems.append({"study_id": int(study_id), "path": str(report_path), "kind": kind,
                             "message": message})
            log.warning("%s (study %s): %s: not used", report_path, study_id, message)
        parsed = extract_sections(text)
        row = {"subject_id": int(subject_id), "study_id": int(study_id), "split": str(split)}
        for name in SECTION_COLUMNS:
            row[name] = parsed.get(name)
        row["label_text"] = parsed.label_text
        row["train_text"] = parsed.train_text(train_section)
        section_rows.append(row)
        if problem is None and not row["train_text"].strip():
            problems.append({"study_id": int(study_id), "path": str(report_path), "kind": "no_train_text",
                             "message": NO_TRAIN_TEXT[train_section]})
        index = 0
        for section, section_text in parsed.train_parts(train_section):
            for position, sentence in enumerate(split_sentences(section_text)):
                if index >= SENTENCE_ID_BASE:
                    log.warning("%s: more than %d sentences; the rest are dropped", report_path, index)
                    break
                sentence_rows.append((int(study_id) * SENTENCE_ID_BASE + index, int(subject_id),
                                      int(study_id), str(split), section, position, sentence))
                index += 1
    sections = pd.DataFrame(section_rows, columns=SECTIONS_TABLE_COLUMNS)
    sentences = pd.DataFrame(sentence_rows, columns=SENTENCE_COLUMNS)
    for column in ("sentence_id", "subject_id", "study_id"):
        sentences[column] = sentences[column].astype("int64")
    for column in ("subject_id", "study_id"):
        sections[column] = sections[column].astype("int64")
    sentences["position"] = sentences["position"].astype("int32")
    return sections, sentences, pd.DataFrame(problems, columns=PROBLEM_COLUMNS)
