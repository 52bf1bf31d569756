"""An HTML gallery of a few queries: the image, its report, the retrieved sentences with hits marked.

Writes `<out_dir>/gallery.html` and one PNG thumbnail per query in `<out_dir>/gallery/`, both
atomically; the page refers to the thumbnails by relative path so the folder can be moved whole.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from txtrayalign.constants import OBSERVATIONS
from txtrayalign.utils import atomic_path

log = logging.getLogger(__name__)

THUMBNAIL = 256
VALUE_NAMES = {1.0: "positive", 0.0: "negative", -1.0: "uncertain"}

CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
.query { display: flex; gap: 1.2em; border-bottom: 1px solid #ccc; padding: 1em 0; }
.query img { width: 256px; height: 256px; object-fit: contain; background: #000; }
.report { max-width: 34em; font-size: 0.9em; color: #444; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 0.25em 0.5em; vertical-align: top; }
tr.hit td { background: #e6f6e6; }
.labels { font-size: 0.8em; color: #555; }
"""


def choose_queries(n_queries: int, n: int, seed: int) -> np.ndarray:
    """`n` query rows chosen at random (seeded), in increasing order."""
    n = min(n, n_queries)
    return np.sort(np.random.default_rng(seed).choice(n_queries, size=n, replace=False))


def _labels_text(labels: np.ndarray) -> str:
    parts = [
        f"{o}: {VALUE_NAMES[float(v)]}" for o, v in zip(OBSERVATIONS, labels, strict=True) if not np.isnan(v)
    ]
    return "; ".join(parts) or "no observation mentioned"


def _save_thumbnail(image: np.ndarray, path: Path) -> None:
    img = Image.fromarray(np.asarray(image, dtype=np.uint8))
    img.thumbnail((THUMBNAIL, THUMBNAIL))
    with atomic_path(path, suffix=".png.tmp") as tmp:
        img.save(tmp, format="PNG")


def _query_block(rows: pd.DataFrame, dicom_id: str, query_labels: dict[str, np.ndarray], reports: dict[int, str],
                 image_reader, thumbs: Path) -> str:
    """One query's HTML: its thumbnail, own report and labels, and the table of its retrieved sentences."""
    study_id = int(rows["study_id"].iloc[0])
    img_html = "<div>(no image)</div>"
    if image_reader is not None:
        try:
            _save_thumbnail(image_reader.get(dicom_id), thumbs / f"{dicom_id}.png")
            img_html = f'<img src="gallery/{html.escape(str(dicom_id))}.png" alt="query image {html.escape(str(dicom_id))}">'
        except (KeyError, OSError, ValueError) as exc:
            log.warning("gallery: image %s not shown: %s", dicom_id, exc)
    table = ["<table><tr><th>rank</th><th>score</th><th>retrieved sentence</th><th>hits</th></tr>"]
    for _, r in rows.iterrows():
        labels = r[OBSERVATIONS].to_numpy(np.float64)
        cls = ' class="hit"' if r["hits"] > 0 else ""
        score = "" if pd.isna(r["score"]) else f"{r['score']:.3f}"
        table.append(
            f"<tr{cls}><td>{int(r['rank'])}</td><td>{score}</td><td>{html.escape(str(r['text']))}"
            f'<div class="labels">{html.escape(_labels_text(labels))}</div></td>'
            f"<td>{'&#10003; ' if r['hits'] > 0 else ''}{html.escape(str(r['hit_observations']))}</td></tr>"
        )
    table.append("</table>")
    truth = _labels_text(query_labels[dicom_id])
    return (
        f'<div class="query">{img_html}<div><h3>{html.escape(str(dicom_id))} (study {study_id})</h3>'
        f'<div class="report"><b>Report:</b> {html.escape(reports.get(study_id, "(no report text)"))}</div>'
        f'<div class="labels"><b>Labels:</b> {html.escape(truth)}</div>{"".join(table)}</div></div>'
    )


def write_gallery(
    out_dir: str | Path,
    predictions: pd.DataFrame,
    query_labels: dict[str, np.ndarray],
    reports: dict[int, str],
    image_reader=None,
    n: int = 12,
    seed: int = 0,
    title: str = "",
) -> Path:
    """Write gallery.html for `n` seeded queries of `predictions` (the model's retrieval table).

    Args:
        predictions: rows of `evaluation.predictions_table` (dicom_id, study_id, rank, text, score,
            the 14 observations, hits, hit_observations).
        query_labels: dicom_id -> the query study's 14 labels.
        reports: study_id -> the query study's own report text (the query dataset's, whatever the bank's).
        image_reader: object with `.get(dicom_id) -> (S, S) uint8`, or None for a page without images.
    """
    out = Path(out_dir)
    thumbs = out / "gallery"
    thumbs.mkdir(parents=True, exist_ok=True)
    ids = pd.unique(predictions["dicom_id"])
    chosen = ids[choose_queries(len(ids), n, seed)] if len(ids) and n > 0 else ids[:0]
    blocks = [_query_block(predictions.loc[predictions["dicom_id"] == dicom_id].sort_values("rank"), dicom_id,
                           query_labels, reports, image_reader, thumbs) for dicom_id in chosen]
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)} gallery</title>"
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}: retrieved sentences</h1>"
        "<p>Green rows: the sentence hits at least one observation of the query study "
        "(same value 1, 0 or -1).</p>" + "\n".join(blocks) + "</body></html>\n"
    )
    path = out / "gallery.html"
    with atomic_path(path, suffix=".html.tmp") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
