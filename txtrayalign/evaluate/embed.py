"""Embed the query images, the sentence bank and the query reports with a trained model (HDF5).

Two independent halves, each written only where it is used (a cross-dataset evaluation against the
training dataset's bank needs no bank of its own): the queries (`select_queries`, `write_queries`) and
the bank (`select_bank`, `write_bank`). Files (see docs/design.md):
- queries.h5: `embeddings` (N, D) for every image of the query split found in the image index,
  `dicom_id`, `study_id`, `view` (from the split table or the optional images table, else ""), and `report_embeddings`
  (R, D) with `report_study_id` (R,): each query study's own report (`train_text` of sections.parquet),
  for exact-pair retrieval. Studies without report text are left out of the report set (logged).
- bank.h5: `embeddings` (M, D), `sentence_id` (M,), `text_count` (M,): how many sentences of the bank
  splits' reports have that exact text (also with `--no-dedupe`, where every row is kept), used by the
  most-frequent-sentences baseline. Also `prompt_embeddings` (14, 2, D): each observation's positive and
  negative zero-shot prompt (`zeroshot`; the prompts as JSON in attr `prompts`), and, when a report
  section is given, the report bank of report-level retrieval (`report_retrieval.report_bank`):
  `report_embeddings` (R, D), `report_study_id` (R,), `report_text_count` (R,), attr `report_section`.
Both carry attrs `model_dir`, `experiment`, `dtype`. Written atomically; no pickles.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch

from txtrayalign.utils import atomic_path, progress

from . import EvaluationInputError
from .report_retrieval import report_bank
from .zeroshot import prompt_embeddings

log = logging.getLogger(__name__)

DTYPES = {"float16": np.float16, "float32": np.float32}


def open_image_reader(index_parquet: str | Path):
    """The pipeline's one shard reader (`txtrayalign.images.shards.ShardReader`)."""
    from txtrayalign.images.shards import ShardReader

    return ShardReader(index_parquet)


@dataclass
class EmbedInputs:
    queries: pd.DataFrame | None  # dicom_id, study_id, view (None: no queries to embed)
    bank: pd.DataFrame | None  # sentence_id, sentence, text_count (None: no bank to embed)
    reports: pd.DataFrame | None  # study_id, text (with the queries)
    prompts: dict[str, tuple[str, str]] | None = None  # observation -> (positive, negative) prompt
    report_bank: pd.DataFrame | None = None  # study_id, text, text_count (report-level retrieval)
    report_section: str | None = None


def select_inputs(
    split: pd.DataFrame,
    images_index: pd.DataFrame,
    sentences: pd.DataFrame,
    sections: pd.DataFrame,
    query_split: str,
    bank_splits: Sequence[str],
    dedupe: bool = True,
    max_queries: int | None = None,
    paths: dict[str, str] | None = None,
    views: pd.DataFrame | None = None,
    prompts: dict[str, tuple[str, str]] | None = None,
    report_section: str | None = None,
) -> EmbedInputs:
    """Choose the query images, the sentence bank and the query reports (`select_queries` and
    `select_bank` together).

    - queries: every image of `query_split` in the split table that the image index holds (missing
      ones are logged), ordered by (study_id, dicom_id); the first `max_queries` when given. Every
      view is kept; `view` comes from the split table, else from `views` (dicom_id, view), else "".
    - bank: sentences of studies whose split (sentences' own `split` column when present, else the
      split table's) is in `bank_splits`; with `dedupe`, one row per exact text keeping the lowest
      sentence_id, with the number of sentences sharing that text.
    - reports: `train_text` of each query study (empty or missing text: left out).
    - prompts: the zero-shot prompts to embed (None: none).
    - report_bank: with `report_section` (a column of `sections`), the bank studies' texts of that
      section, one row per exact text (`report_retrieval.report_bank`).
    """
    queries, reports = select_queries(split, images_index, sections, query_split, max_queries, paths, views)
    bank, r_bank = select_bank(split, sentences, sections, bank_splits, dedupe, paths, report_section)
    return EmbedInputs(
        queries=queries, bank=bank, reports=reports, prompts=prompts, report_bank=r_bank,
        report_section=report_section,
    )


def select_queries(
    split: pd.DataFrame,
    images_index: pd.DataFrame,
    sections: pd.DataFrame,
    query_split: str,
    max_queries: int | None = None,
    paths: dict[str, str] | None = None,
    views: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The query images (dicom_id, study_id, view) and their studies' reports (study_id, text); see
    `select_inputs`."""
    paths = paths or {}
    q = split.loc[split["split"] == query_split].copy()
    in_index = q["dicom_id"].isin(set(images_index["dicom_id"]))
    if (~in_index).any():
        log.warning(
            "%d of %d %s images are not in %s (not decoded?): left out",
            int((~in_index).sum()),
            len(q),
            query_split,
            paths.get("images_index", "the image index"),
        )
    q = q.loc[in_index]
    if "view" not in q.columns:
        if views is not None:
            q = q.merge(views[["dicom_id", "view"]].drop_duplicates("dicom_id"), on="dicom_id", how="left")
        else:
            q["view"] = ""
    q["view"] = q["view"].fillna("").astype(str)
    q = q.sort_values(["study_id", "dicom_id"], kind="stable")
    if max_queries is not None:
        q = q.head(max_queries)
    queries = q[["dicom_id", "study_id", "view"]].reset_index(drop=True)
    if queries.empty:
        raise EvaluationInputError(
            f"no query images: split {query_split!r} of {paths.get('split', 'the split table')} has no image "
            f"found in {paths.get('images_index', 'the image index')}"
        )
    study_text = sections.drop_duplicates("study_id").set_index("study_id")["train_text"]
    report_ids = pd.unique(queries["study_id"])
    texts = study_text.reindex(report_ids)
    has_text = texts.notna() & (texts.astype(str).str.strip() != "")
    if (~has_text).any():
        log.warning(
            "%d query studies have no report text in %s: left out of exact-pair retrieval",
            int((~has_text).sum()),
            paths.get("sections", "sections"),
        )
    reports = pd.DataFrame(
        {"study_id": report_ids[has_text.to_numpy()], "text": texts[has_text].astype(str).to_numpy()}
    )
    return queries, reports


def select_bank(
    split: pd.DataFrame,
    sentences: pd.DataFrame,
    sections: pd.DataFrame,
    bank_splits: Sequence[str],
    dedupe: bool = True,
    paths: dict[str, str] | None = None,
    report_section: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The sentence bank (sentence_id, sentence, text_count) and, with `report_section`, the report
    bank; see `select_inputs`."""
    paths = paths or {}
    if "split" in sentences.columns:
        in_bank = sentences["split"].isin(list(bank_splits))
        source = paths.get("sentences", "sentences")
    else:
        studies = set(split.loc[split["split"].isin(list(bank_splits)), "study_id"])
        in_bank = sentences["study_id"].isin(studies)
        source = paths.get("split", "split table")
    bank = sentences.loc[in_bank, ["sentence_id", "sentence"]].sort_values("sentence_id", kind="stable")
    bank = bank.loc[bank["sentence"].notna() & (bank["sentence"].astype(str).str.strip() != "")]
    log.info("sentence bank: %d sentences of splits %s (split from %s)", len(bank), list(bank_splits), source)
    counts = bank.groupby("sentence", sort=False)["sentence_id"].transform("size")
    bank = bank.assign(text_count=counts.to_numpy())
    if dedupe:
        bank = bank.drop_duplicates("sentence", keep="first")
        log.info("deduplicated by exact text: %d distinct sentences", len(bank))
    bank = bank.reset_index(drop=True)
    if bank.empty:
        raise EvaluationInputError(
            f"empty sentence bank: no sentence of splits {list(bank_splits)} in {paths.get('sentences', 'sentences')}"
        )

    r_bank = None
    if report_section:
        if "split" in sections.columns:
            bank_studies = sections.loc[sections["split"].isin(list(bank_splits)), "study_id"]
        else:
            bank_studies = split.loc[split["split"].isin(list(bank_splits)), "study_id"]
        r_bank = report_bank(
            sections, report_section, bank_studies.unique(), where=paths.get("sections", "sections")
        )
    return bank, r_bank


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast("cpu", enabled=False)


def encode_in_batches(
    items: Sequence,
    encode: Callable[[Sequence], torch.Tensor],
    batch_size: int,
    desc: str,
    dtype: np.dtype,
) -> np.ndarray:
    """Run `encode` over `items` in batches (no_grad) and stack the results as a numpy array of `dtype`."""
    parts: list[np.ndarray] = []
    starts = range(0, len(items), batch_size)
    for s in progress(starts, desc=desc, total=len(starts), unit="batch"):
        with torch.no_grad():
            out = encode(items[s : s + batch_size])
        parts.append(out.detach().float().cpu().numpy().astype(dtype))
    return np.concatenate(parts, axis=0)


def embed_all(
    model,
    inputs: EmbedInputs,
    image_reader,
    device: torch.device,
    batch_size: int = 256,
    dtype: str = "float16",
) -> dict[str, np.ndarray]:
    """Encode what `inputs` holds: the query images and their reports (`queries`, `reports`), the bank
    sentences, prompts and report bank (`bank`, `prompts`, `report_bank`)."""
    np_dtype = DTYPES[dtype]

    def images(ids: Sequence[str]) -> torch.Tensor:
        if hasattr(image_reader, "get_many"):  # one sorted read per shard
            x = torch.from_numpy(np.ascontiguousarray(image_reader.get_many(list(ids)), dtype=np.uint8))
        else:
            x = torch.from_numpy(np.stack([np.asarray(image_reader.get(d), dtype=np.uint8) for d in ids]))
        with _autocast(device):
            return model.encode_images(x.to(device))

    def texts(batch: Sequence[str]) -> torch.Tensor:
        with _autocast(device):
            return model.encode_texts(list(batch))

    out: dict[str, np.ndarray] = {}
    if inputs.queries is not None:
        out["queries"] = encode_in_batches(inputs.queries["dicom_id"].tolist(), images, batch_size, "embed images",
                                           np_dtype)
        if len(inputs.reports):
            out["reports"] = encode_in_batches(
                inputs.reports["text"].tolist(), texts, batch_size, "embed reports", np_dtype
            )
        else:
            out["reports"] = np.zeros((0, out["queries"].shape[1]), dtype=np_dtype)
    if inputs.bank is None:
        return out
    if inputs.prompts is not None:
        out["prompts"] = prompt_embeddings(
            lambda t: encode_in_batches(t, texts, batch_size, "embed prompts", np.float32), inputs.prompts)
    if inputs.report_bank is not None:
        out["report_bank"] = encode_in_batches(inputs.report_bank["text"].tolist(), texts, batch_size,
                                               "embed report bank", np_dtype)
    out["bank"] = encode_in_batches(
        inputs.bank["sentence"].astype(str).tolist(), texts, batch_size, "embed sentences", np_dtype
    )
    return out


def _strings(values) -> np.ndarray:
    return np.asarray([str(v) for v in values], dtype=object)


def write_queries(path: str | Path, inputs: EmbedInputs, emb: dict[str, np.ndarray], attrs: dict) -> None:
    with atomic_path(path, suffix=".h5.tmp") as tmp, h5py.File(tmp, "w") as f:
        str_dt = h5py.string_dtype()
        f.create_dataset("embeddings", data=emb["queries"])
        f.create_dataset("dicom_id", data=_strings(inputs.queries["dicom_id"]), dtype=str_dt)
        f.create_dataset("study_id", data=inputs.queries["study_id"].to_numpy(np.int64))
        f.create_dataset("view", data=_strings(inputs.queries["view"].fillna("")), dtype=str_dt)
        f.create_dataset("report_embeddings", data=emb["reports"])
        f.create_dataset("report_study_id", data=inputs.reports["study_id"].to_numpy(np.int64))
        f.attrs.update(attrs)


def write_empty_queries(path: str | Path, attrs: dict) -> None:
    """queries.h5 of a split without images (`embed --allow-empty`): every dataset, none with a row."""
    inputs = EmbedInputs(queries=pd.DataFrame({"dicom_id": [], "study_id": [], "view": []}), bank=None,
                         reports=pd.DataFrame({"study_id": []}))
    empty = np.zeros((0, 0), np.float32)
    write_queries(path, inputs, {"queries": empty, "reports": empty}, {**attrs, "empty": True})


def queries_count(path: str | Path) -> int:
    """How many query images a queries.h5 holds (0: `embed --allow-empty` found none), without reading them."""
    with _open(path) as f:
        return int(_need(f, "dicom_id", path).shape[0]) if "dicom_id" in f else 0


def write_bank(path: str | Path, inputs: EmbedInputs, emb: dict[str, np.ndarray], attrs: dict) -> None:
    with atomic_path(path, suffix=".h5.tmp") as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("embeddings", data=emb["bank"])
        f.create_dataset("sentence_id", data=inputs.bank["sentence_id"].to_numpy(np.int64))
        f.create_dataset("text_count", data=inputs.bank["text_count"].to_numpy(np.int64))
        if "prompts" in emb:
            f.create_dataset("prompt_embeddings", data=emb["prompts"].astype(np.float32))
            f.attrs["prompts"] = json.dumps({k: list(v) for k, v in inputs.prompts.items()})
        if "report_bank" in emb:
            f.create_dataset("report_embeddings", data=emb["report_bank"])
            f.create_dataset("report_study_id", data=inputs.report_bank["study_id"].to_numpy(np.int64))
            f.create_dataset("report_text_count", data=inputs.report_bank["text_count"].to_numpy(np.int64))
            f.attrs["report_section"] = inputs.report_section
        f.attrs.update(attrs)


@dataclass
class QuerySet:
    embeddings: np.ndarray
    dicom_id: np.ndarray
    study_id: np.ndarray
    view: np.ndarray
    report_embeddings: np.ndarray
    report_study_id: np.ndarray
    attrs: dict


@dataclass
class Bank:
    embeddings: np.ndarray
    sentence_id: np.ndarray
    text_count: np.ndarray
    attrs: dict
    prompt_embeddings: np.ndarray  # (14, 2, D)
    prompts: dict[str, list[str]]
    report_embeddings: np.ndarray | None = None  # (R, D): the report bank
    report_study_id: np.ndarray | None = None
    report_text_count: np.ndarray | None = None
    report_section: str | None = None


def _need(f: h5py.File, name: str, path: str | Path) -> np.ndarray:
    if name not in f:
        raise EvaluationInputError(f"{path}: dataset {name!r} missing; found {sorted(f.keys())}")
    return f[name][()]


def _decode(a: np.ndarray) -> np.ndarray:
    return np.asarray([x.decode() if isinstance(x, bytes) else str(x) for x in a], dtype=object)


def _open(path: str | Path) -> h5py.File:
    if not Path(path).is_file():
        raise EvaluationInputError(f"embeddings file not found: {path}")
    return h5py.File(path, "r")


def read_queries(path: str | Path) -> QuerySet:
    """queries.h5 as `embed` writes it (every dataset required: the code fingerprint reruns the embed
    stage whenever its writer changes, so there is no older layout to read)."""
    with _open(path) as f:
        return QuerySet(
            embeddings=_need(f, "embeddings", path),
            dicom_id=_decode(_need(f, "dicom_id", path)),
            study_id=_need(f, "study_id", path).astype(np.int64),
            view=_decode(_need(f, "view", path)),
            report_embeddings=_need(f, "report_embeddings", path),
            report_study_id=_need(f, "report_study_id", path).astype(np.int64),
            attrs=dict(f.attrs),
        )


def read_bank(path: str | Path) -> Bank:
    """bank.h5 as `embed` writes it; the report bank is optional (`--report-section none`)."""
    with _open(path) as f:
        has_reports = "report_embeddings" in f
        return Bank(
            embeddings=_need(f, "embeddings", path),
            sentence_id=_need(f, "sentence_id", path).astype(np.int64),
            text_count=_need(f, "text_count", path).astype(np.int64),
            attrs={k: v for k, v in f.attrs.items() if k != "prompts"},
            prompt_embeddings=_need(f, "prompt_embeddings", path),
            prompts=json.loads(f.attrs["prompts"]),
            report_embeddings=f["report_embeddings"][()] if has_reports else None,
            report_study_id=_need(f, "report_study_id", path).astype(np.int64) if has_reports else None,
            report_text_count=_need(f, "report_text_count", path).astype(np.int64) if has_reports else None,
            report_section=str(f.attrs["report_section"]) if has_reports else None,
        )
