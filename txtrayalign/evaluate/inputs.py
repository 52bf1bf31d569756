"""What one evaluation reads, split by meaning, each part with its own loader.

- `Queries`: the query images (ids, view, embeddings), each one's truth labels and its study's row of
  text/sections.parquet (report text, label text, every section), and the query reports' embeddings.
- `SentenceBank`: the bank sentences (embeddings, ids, texts, labels, how often each text occurs).
- `ReportBank`: the bank of whole report sections of bank.h5 (report-level retrieval), or None.
- `Prompts`: the zero-shot prompt embeddings of bank.h5, or None.
- `Truth`: the query studies' labels by labeller (`chexpert`, `chexpert-sentence-max`, `chexbert`, ...,
  `official`), or why a labeller's labels are absent.
- `EvaluationInputs`: all of them, plus the validation queries (`--validation-queries`, else None).

`load_inputs(paths, settings, labels)` reads every table through `txtrayalign.tables.read_table` and
raises `EvaluationInputError` (naming the files) when they do not fit together.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from txtrayalign.constants import OBSERVATIONS
from txtrayalign.tables import read_table

from . import EvaluationInputError
from .context import stream_seed
from .embed import Bank, queries_count, read_bank, read_queries
from .labels import sentence_max_labels, study_label_rows

log = logging.getLogger(__name__)

# How a query study gets its labels: the labeller on the whole report (labels/reports.parquet), or, as
# the original research code did, the per-observation maximum over the study's sentence labels.
QUERY_LABELS = ("report", "sentence_max")
TRUTH_ORDER = ("chexpert", "chexpert-sentence-max", "chexbert", "chexbert-sentence-max", "official")
LABEL_COLUMNS = ["study_id", *OBSERVATIONS]


@dataclass
class Queries:
    """Query images aligned by row: image i of study study_id[i] has labels labels[i]."""

    dicom_id: np.ndarray
    study_id: np.ndarray
    view: np.ndarray
    embeddings: np.ndarray
    labels: np.ndarray  # (N, 14): the truth of the retrieval metrics (`labels_from`)
    labels_from: str  # one of QUERY_LABELS
    sections: pd.DataFrame | None  # row i: study_id[i]'s row of text/sections.parquet; None: not given
    report_embeddings: np.ndarray  # (R, D) the query studies' reports (exact-pair retrieval)
    report_study_id: np.ndarray
    path: str
    attrs: dict = field(default_factory=dict)  # queries.h5's attributes (experiment, model_dir, ...)

    def section_texts(self, column: str) -> np.ndarray | None:
        """Each query's `column` of sections.parquet ("" where empty); None without that column."""
        if self.sections is None or column not in self.sections.columns:
            return None
        return self.sections[column].fillna("").astype(str).to_numpy(dtype=object)


@dataclass
class SentenceBank:
    embeddings: np.ndarray
    sentence_id: np.ndarray
    texts: np.ndarray
    labels: np.ndarray  # (M, 14)
    text_count: np.ndarray  # studies sharing each text (the most-frequent baseline)
    labelled_by: str  # the label stage's labeller ("chexpert" or "chexbert")
    path: str


@dataclass
class ReportBank:
    embeddings: np.ndarray
    study_id: np.ndarray
    texts: np.ndarray
    labels: np.ndarray  # (R, 14): each report's study labels, blank when absent
    text_count: np.ndarray
    section: str
    path: str


@dataclass
class Prompts:
    embeddings: np.ndarray  # (14, 2, D)
    prompts: dict


@dataclass
class Truth:
    """The query studies' labels by labeller, or (a string) why that labeller's are absent."""

    labels: dict[str, np.ndarray | str] = field(default_factory=dict)


@dataclass
class EvaluationInputs:
    experiment: str
    queries: Queries
    sentence_bank: SentenceBank
    report_bank: ReportBank | None
    prompts: Prompts | None
    truth: Truth
    validation_queries: Queries | None
    paths: dict[str, str]


@dataclass
class LabelTables:
    """The label tables the truth of any query set is built from."""

    report_labels: pd.DataFrame
    report_labels_path: str
    report_labels_name: str  # "chexpert", "chexbert" or "official"
    sentence_labels: pd.DataFrame
    sentences: pd.DataFrame
    sentence_labels_name: str
    official: pd.DataFrame | None


def _ids_present(ids: np.ndarray, available: pd.Index, what: str, ids_path: str, path: str, hint: str = "") -> None:
    missing = pd.Index(ids).difference(available)
    if len(missing):
        raise EvaluationInputError(
            f"{len(missing)} {what} of {ids_path} are absent from {path} (first: {list(missing[:5])}){hint}"
        )


def _check_embeddings(path: str, emb: np.ndarray, empty: str) -> None:
    if emb.shape[0] == 0:
        raise EvaluationInputError(empty)
    if not np.isfinite(emb).all():
        raise EvaluationInputError(f"{path}: embeddings contain NaN or infinite values (a diverged model?)")


def read_official_labels(path: str | Path) -> pd.DataFrame:
    """A study label table (study_id + the 14 observations): parquet, or a CSV as the dataset ships it."""
    p = Path(path)
    if not p.is_file():
        raise EvaluationInputError(f"official label table not found: {p}")
    if p.suffix == ".parquet":
        return read_table(p, "report_labels", LABEL_COLUMNS)
    from txtrayalign.chexpert.files import read_official

    try:
        return read_official(str(p))
    except ValueError as exc:
        raise EvaluationInputError(str(exc)) from exc


def load_label_tables(paths: Mapping[str, str | None], labels: Mapping) -> LabelTables:
    """The label tables named by `paths`; `labels` (the resolved `labels` settings) says whose they are."""
    return LabelTables(
        report_labels=read_table(paths["report_labels"], "report_labels", LABEL_COLUMNS),
        report_labels_path=str(paths["report_labels"]),
        report_labels_name="official" if labels["source"] == "official" else labels["labeller"],
        sentence_labels=read_table(paths["sentence_labels"], "sentence_labels", ["sentence_id", *OBSERVATIONS]),
        sentences=read_table(paths["sentences"], "sentences", ["sentence_id", "study_id", "sentence"]),
        sentence_labels_name=labels["labeller"],
        official=read_official_labels(paths["official_labels"]) if paths.get("official_labels") else None,
    )


def load_truth(tables: LabelTables, study_id: np.ndarray, query_labels: str, ids_path: str) -> Truth:
    """The truth labels of the query studies `study_id` by labeller (`TRUTH_ORDER`).

    The labels of the query labeller (`query_labels` "report") must cover every query study; the
    others are blank for a study they lack."""
    sentence_max = study_label_rows(sentence_max_labels(tables.sentence_labels, tables.sentences), study_id)
    if query_labels == "report":
        table = tables.report_labels.drop_duplicates("study_id").set_index("study_id")
        _ids_present(study_id, table.index, "query study ids", ids_path, tables.report_labels_path,
                     ": embeddings and labels come from different runs?")
    truth: dict[str, np.ndarray | str] = {
        tables.report_labels_name: study_label_rows(tables.report_labels, study_id),
        f"{tables.sentence_labels_name}-sentence-max": sentence_max,
    }
    if tables.report_labels_name != "chexpert":
        truth["chexpert"] = (f"{tables.report_labels_path} holds {tables.report_labels_name} labels "
                             "(labels of the label stage)")
    if "official" not in truth:
        truth["official"] = (study_label_rows(tables.official, study_id) if tables.official is not None
                             else "no official label table (the dataset's own labels) given")
    return Truth(ordered_truth(truth))


def ordered_truth(truth: Mapping[str, np.ndarray | str]) -> dict[str, np.ndarray | str]:
    def rank(name: str) -> int:
        return TRUTH_ORDER.index(name) if name in TRUTH_ORDER else len(TRUTH_ORDER)

    return {name: truth[name] for name in sorted(truth, key=rank)}


def query_labels_of(truth: Truth, tables: LabelTables, query_labels: str) -> np.ndarray:
    """The labels the retrieval metrics score against: the report labeller's or the sentence maximum."""
    if query_labels == "sentence_max":
        return truth.labels[f"{tables.sentence_labels_name}-sentence-max"]
    return truth.labels[tables.report_labels_name]


def load_queries(path: str, sections_path: str | None, sample: int | None = None, seed: int = 0) -> Queries:
    """The query images of queries.h5 (`sample` of them, seeded) with their studies' sections rows;
    their labels are filled by `load_inputs`."""
    qs = read_queries(path)
    _check_embeddings(path, qs.embeddings, f"empty query set: {path} holds no query embeddings")
    rows = np.arange(qs.embeddings.shape[0])
    if sample is not None and sample < rows.size:
        rng = np.random.default_rng(stream_seed(seed, "sample"))
        rows = np.sort(rng.choice(rows.size, size=sample, replace=False))
        log.info("sampled %d of %d queries (seed %d)", rows.size, qs.embeddings.shape[0], seed)
    study_id = qs.study_id[rows]
    sections = None
    if sections_path is not None:
        table = read_table(sections_path, "sections", ["study_id", "train_text"], all_columns=True)
        table = table.drop_duplicates("study_id").set_index("study_id")
        _ids_present(study_id, table.index, "query study ids", path, sections_path)
        sections = table.loc[study_id].reset_index()
    return Queries(
        dicom_id=qs.dicom_id[rows], study_id=study_id, view=qs.view[rows], embeddings=qs.embeddings[rows],
        labels=np.zeros((rows.size, len(OBSERVATIONS)), np.float32), labels_from="report", sections=sections,
        report_embeddings=qs.report_embeddings, report_study_id=qs.report_study_id, path=str(path), attrs=qs.attrs,
    )


def load_sentence_bank(bank: Bank, path: str, tables: LabelTables, paths: Mapping[str, str | None]) -> SentenceBank:
    if len(np.unique(bank.sentence_id)) != bank.sentence_id.shape[0]:
        raise EvaluationInputError(f"{path}: sentence_id values are not unique")
    labels = tables.sentence_labels.drop_duplicates("sentence_id").set_index("sentence_id")
    _ids_present(bank.sentence_id, labels.index, "bank sentence ids", path, str(paths["sentence_labels"]),
                 ": embeddings and labels come from different runs?")
    texts = tables.sentences.drop_duplicates("sentence_id").set_index("sentence_id")["sentence"]
    _ids_present(bank.sentence_id, texts.index, "bank sentence ids", path, str(paths["sentences"]))
    bank_text = texts.loc[bank.sentence_id].astype(str).to_numpy(dtype=object)
    return SentenceBank(
        embeddings=bank.embeddings, sentence_id=bank.sentence_id, texts=bank_text,
        labels=labels.loc[bank.sentence_id, OBSERVATIONS].to_numpy(np.float32), text_count=bank.text_count,
        labelled_by=tables.sentence_labels_name, path=str(path),
    )


def load_report_bank(bank: Bank, path: str, paths: Mapping[str, str | None], tables: LabelTables) -> ReportBank | None:
    """The report bank of bank.h5 with each report's text (the bank dataset's sections) and its
    study's labels (the bank dataset's report labels); None when bank.h5 holds none."""
    sections_path = paths.get("bank_sections") or paths.get("sections")
    if bank.report_embeddings is None:
        return None
    if sections_path is None:
        log.warning("%s holds a report bank but no sections table was given: report-level retrieval skipped", path)
        return None
    section = bank.report_section
    sections = read_table(sections_path, "sections", ["study_id"], all_columns=True)
    column = sections.drop_duplicates("study_id").set_index("study_id")
    if section not in column.columns:
        raise EvaluationInputError(
            f"{path}: report bank of section {section!r} but {sections_path} has no such column")
    _ids_present(bank.report_study_id, column.index, "report bank study ids", path, str(sections_path),
                 ": embeddings and sections come from different runs?")
    labels = tables.report_labels
    if paths.get("bank_report_labels"):
        labels = read_table(paths["bank_report_labels"], "report_labels", LABEL_COLUMNS)
    return ReportBank(
        embeddings=bank.report_embeddings, study_id=bank.report_study_id,
        texts=column.loc[bank.report_study_id, section].fillna("").astype(str).to_numpy(object),
        labels=study_label_rows(labels, bank.report_study_id),
        text_count=bank.report_text_count, section=section, path=str(path),
    )


def labelled_queries(path: str, tables: LabelTables, settings: Mapping, sections: str | None,
                     sample: int | None) -> tuple[Queries, Truth]:
    """Queries of `path` with their labels (`settings["query_labels"]`) and their truth."""
    queries = load_queries(path, sections, sample, settings["seed"])
    truth = load_truth(tables, queries.study_id, settings["query_labels"], path)
    labels = query_labels_of(truth, tables, settings["query_labels"])
    return replace(queries, labels=labels, labels_from=settings["query_labels"]), truth


def load_inputs(paths: Mapping[str, str | None], settings: Mapping, labels: Mapping,
                experiment: str | None = None) -> EvaluationInputs:
    """Read and cross-check the evaluation inputs.

    `paths`: queries, bank, report_labels, sentence_labels, sentences (required); sections,
    bank_sections, bank_report_labels, official_labels, validation_queries (optional, None: absent).
    `settings`: the resolved `evaluation` settings (query_labels, sample, seed); `labels`: the resolved
    `labels` settings (whose labels the label tables hold).
    """
    tables = load_label_tables(paths, labels)
    queries, truth = labelled_queries(paths["queries"], tables, settings, paths.get("sections"), settings["sample"])
    bank = read_bank(paths["bank"])
    _check_embeddings(paths["bank"], bank.embeddings,
                      f"empty sentence bank: {paths['bank']} holds no sentence embeddings")
    if queries.embeddings.shape[1] != bank.embeddings.shape[1]:
        raise EvaluationInputError(
            f"embedding widths differ: {paths['queries']} has {queries.embeddings.shape[1]}, "
            f"{paths['bank']} has {bank.embeddings.shape[1]}")
    validation = None
    if paths.get("validation_queries") and not queries_count(paths["validation_queries"]):
        log.warning("%s holds no image (the validation split is empty): evaluated without validation queries",
                    paths["validation_queries"])
    elif paths.get("validation_queries"):
        validation, _ = labelled_queries(paths["validation_queries"], tables, settings, paths.get("sections"), None)
    name = experiment or str(queries.attrs.get("experiment") or Path(paths["queries"]).parent.name)
    return EvaluationInputs(
        experiment=name, queries=queries, sentence_bank=load_sentence_bank(bank, paths["bank"], tables, paths),
        report_bank=load_report_bank(bank, paths["bank"], paths, tables),
        prompts=Prompts(bank.prompt_embeddings, bank.prompts),
        truth=truth, validation_queries=validation,
        paths={key: str(paths[key]) for key in ("queries", "bank", "report_labels", "sentence_labels", "sentences",
                                                 "sections", "train_queries", "patients") if paths.get(key) is not None},
    )
