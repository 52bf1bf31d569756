"""`txtrayalign sections`: report sections and sentences for every study of studies.parquet."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from txtrayalign.text.sections import SECTION_COLUMNS, TRAIN_SECTIONS, extract_sections
from txtrayalign.text.sentences import split_sentences
from txtrayalign.utils import progress, setup_logging, write_parquet_atomic

log = logging.getLogger(__name__)

STUDY_COLUMNS = ["subject_id", "study_id", "report_path", "split"]
PROBLEM_COLUMNS = ["study_id", "path", "kind", "message"]
SENTENCE_COLUMNS = ["sentence_id", "subject_id", "study_id", "split", "section", "position", "sentence"]
# sentence_id = study_id * SENTENCE_ID_BASE + index of the sentence within the study's train text.
SENTENCE_ID_BASE = 10_000


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--studies", required=True, help="studies.parquet from the index stage "
                        "(subject_id, study_id, report_path relative to --root, split, group)")
    parser.add_argument("--root", required=True, help="dataset root that report_path is relative to")
    parser.add_argument("--train-section", default="impression", choices=TRAIN_SECTIONS,
                        help="which section(s) make the training text: impression, findings, or both "
                             "(findings then impression, joined) [impression]")
    parser.add_argument("--out-sections", required=True, help="output sections.parquet")
    parser.add_argument("--out-sentences", required=True, help="output sentences.parquet (sentences of the "
                        "training text)")
    parser.add_argument("--out-problems", required=True, help="output problems.parquet: reports missing, "
                        "empty or not UTF-8")
    parser.add_argument("--log", default=None, help="also write the log to this file")


def read_report(path: Path) -> tuple[str, tuple[str, str] | None]:
    """The report's text and, when something is wrong with it, (kind, message).

    kind is `missing` (no such file; text is ""), `not_utf8` (decoded with replacement characters)
    or `empty` (nothing but whitespace).
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return "", ("missing", "report file not found")
    except OSError as exc:
        return "", ("missing", f"report file unreadable: {exc}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = raw.decode("utf-8", errors="replace")
        return text, ("not_utf8", f"not valid UTF-8 ({exc.reason} at byte {exc.start}); decoded with "
                                  "replacement characters")
    if not text.strip():
        return "", ("empty", "report is empty")
    return text, None


def _load_studies(path: str) -> pd.DataFrame:
    studies = pd.read_parquet(path)
    missing = [c for c in STUDY_COLUMNS if c not in studies.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing} (have {list(studies.columns)})")
    duplicated = studies["study_id"][studies["study_id"].duplicated()]
    if len(duplicated):
        raise ValueError(f"{path}: study_id must be unique; repeated: {duplicated.head(5).tolist()}")
    return studies


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
            log.warning("%s (study %s): %s", report_path, study_id, message)
        parsed = extract_sections(text)
        row = {"subject_id": int(subject_id), "study_id": int(study_id), "split": str(split)}
        for name in SECTION_COLUMNS:
            row[name] = parsed.get(name)
        row["label_text"] = parsed.label_text
        row["train_text"] = parsed.train_text(train_section)
        section_rows.append(row)
        index = 0
        for section, section_text in parsed.train_parts(train_section):
            for position, sentence in enumerate(split_sentences(section_text)):
                if index >= SENTENCE_ID_BASE:
                    log.warning("%s: more than %d sentences; the rest are dropped", report_path, index)
                    break
                sentence_rows.append((int(study_id) * SENTENCE_ID_BASE + index, int(subject_id),
                                      int(study_id), str(split), section, position, sentence))
                index += 1
    sections = pd.DataFrame(section_rows, columns=["subject_id", "study_id", "split", *SECTION_COLUMNS,
                                                   "label_text", "train_text"])
    sentences = pd.DataFrame(sentence_rows, columns=SENTENCE_COLUMNS)
    for column in ("sentence_id", "subject_id", "study_id"):
        sentences[column] = sentences[column].astype("int64")
    for column in ("subject_id", "study_id"):
        sections[column] = sections[column].astype("int64")
    sentences["position"] = sentences["position"].astype("int32")
    return sections, sentences, pd.DataFrame(problems, columns=PROBLEM_COLUMNS)


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log)
    studies = _load_studies(args.studies)
    root = Path(args.root)
    if not root.is_dir():
        raise FileNotFoundError(f"--root {root} is not a folder")
    sections, sentences, problems = build_tables(studies, root, args.train_section)
    write_parquet_atomic(sections, args.out_sections)
    write_parquet_atomic(sentences, args.out_sentences)
    write_parquet_atomic(problems, args.out_problems)
    counts = problems["kind"].value_counts().to_dict() if len(problems) else {}
    log.info("%d reports -> %d sentences (%s); problems: %s", len(sections), len(sentences),
             args.train_section, counts or "none")
    return 0
