"""Write a whole synthetic dataset: files first, tables last and atomically.

Layouts: `mimic` (MIMIC-CXR(-JPG), the default) and `openi` (the IU X-ray original distribution,
`txtrayalign.synth.openi`); the same seed gives the same studies in both.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from txtrayalign import constants as C
from txtrayalign.synth import demographics, openi
from txtrayalign.synth.faults import FAULTS_CSV, inject_faults, write_faults_csv
from txtrayalign.synth.plan import StudyPlan, plan_dataset
from txtrayalign.synth.study import FORMATS, Options, make_studies
from txtrayalign.synth.tables import write_csv_gz
from txtrayalign.utils import atomic_path, progress

log = logging.getLogger(__name__)

TABLES = (C.RECORD_LIST, C.STUDY_LIST, C.METADATA, C.SPLIT_TABLE, C.CHEXPERT_TABLE)
CHUNK = 16  # studies per process-pool task
MARKER = ".txtrayalign-synth.json"  # says the root was written by this generator (safe to replace)
LAYOUTS = ("mimic", "openi")


def _prepare(out: Path, overwrite: bool, settings: dict) -> None:
    """Replace an earlier synthetic dataset; refuse to touch any other data unless told to.

    Tables go first, so a killed rerun leaves no complete-looking tables beside a half-written tree.
    """
    folders = [out / n for n in ("files", openi.REPORTS_DIR, openi.IMAGES_DIR)]
    existing = [out / n for n in (*TABLES, openi.PROJECTIONS, openi.LABELS) if (out / n).exists()] + [
        d for d in folders if d.is_dir() and any(d.iterdir())]
    if existing and not overwrite and not (out / MARKER).is_file():
        raise FileExistsError(f"{out} holds data this generator did not write ({existing[0].name}); "
                              "pass overwrite=True (--overwrite) to replace it")
    for name in (*TABLES, FAULTS_CSV, openi.PROJECTIONS, openi.LABELS, *demographics.TABLES):
        (out / name).unlink(missing_ok=True)
    for folder in folders:
        if folder.is_dir():
            shutil.rmtree(folder)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / MARKER) as tmp:
        tmp.write_text(json.dumps(settings, sort_keys=True) + "\n", encoding="utf-8")


def _chunks(plans: list[StudyPlan], size: int) -> list[list[StudyPlan]]:
    return [plans[i:i + size] for i in range(0, len(plans), size)]


def generate(out: Path, studies: int, seed: int, fmt: str = "jpg", image_size: int = 512, faults: bool = False,
             workers: int = 1, overwrite: bool = False, layout: str = "mimic", disparity: str | None = None,
             disparity_scale: float = 0.35) -> dict:
    """Write `studies` synthetic studies under `out` in the exact MIMIC-CXR(-JPG) or Open-i layout.

    Deterministic in `seed` whatever `workers` is. Returns a summary: counts, seconds, studies_per_second.
    `fmt` applies to the MIMIC layout (Open-i images are PNG), and so do the MIMIC-IV demographics
    (`synth.demographics`) and `disparity` (`ATTRIBUTE=GROUP`: that group's findings drawn at
    `disparity_scale` of their strength).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 pixels, got {image_size}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    out = Path(out)
    start = time.perf_counter()
    _prepare(out, overwrite, {"studies": studies, "seed": seed, "format": fmt, "image_size": image_size,
                              "faults": faults, "layout": layout, "disparity": disparity,
                              "disparity_scale": disparity_scale})
    plans = plan_dataset(studies, seed)
    if layout == "openi":
        return _generate_openi(out, plans, seed, image_size, faults, workers, start)
    people = demographics.draw_people(plans, seed)
    faint = demographics.planted_subjects(plans, people, disparity)
    opts = Options(str(out), seed, fmt, image_size, faint, disparity_scale)
    chunks = _chunks(plans, CHUNK)
    results: list[dict] = []
    if workers == 1:
        for chunk in progress(chunks, desc="synth", unit="chunk"):
            results.extend(make_studies(chunk, opts))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for part in progress(pool.map(make_studies, chunks, [opts] * len(chunks)), desc="synth",
                                 total=len(chunks), unit="chunk"):
                results.extend(part)
    images = {r["labels"]["study_id"]: [i["dicom_id"] for i in r["images"]] for r in results}
    fault_rows = inject_faults(out, plans, images, fmt, seed) if faults else []
    if faults:
        write_faults_csv(out, fault_rows)
    _write_tables(out, plans, results)
    demographics.write_tables(out, plans, people, seed)
    seconds = time.perf_counter() - start
    n_images = sum(len(r["images"]) for r in results)
    summary = {
        "root": str(out), "studies": len(results), "images": n_images,
        "patients": len({p.subject_id for p in plans}), "faults": len(fault_rows), "format": fmt,
        "image_size": image_size, "workers": workers, "seconds": round(seconds, 3),
        "studies_per_second": round(len(results) / seconds, 2) if seconds > 0 else float("inf"),
        "splits": {s: sum(1 for p in plans if p.split == s) for s in C.SPLITS},
        "disparity": disparity, "planted_studies": len(faint),
    }
    log.info("synthetic dataset: %(studies)d studies, %(images)d images in %(seconds).1f s "
             "(%(studies_per_second).1f studies/s)", summary)
    return summary


def _write_tables(out: Path, plans: list[StudyPlan], results: list[dict]) -> None:
    """The five tables, sorted by subject and study as MIMIC's are; each written atomically."""
    order = sorted(range(len(plans)), key=lambda i: (plans[i].subject_id, plans[i].study_id))
    image_rows = [img for i in order for img in results[i]["images"]]
    write_csv_gz(out / C.RECORD_LIST, C.TABLE_COLUMNS[C.RECORD_LIST], image_rows)
    write_csv_gz(out / C.STUDY_LIST, C.TABLE_COLUMNS[C.STUDY_LIST],
                 ({"subject_id": plans[i].subject_id, "study_id": plans[i].study_id, "path": plans[i].report_path}
                  for i in order))
    write_csv_gz(out / C.METADATA, C.TABLE_COLUMNS[C.METADATA], image_rows)
    write_csv_gz(out / C.SPLIT_TABLE, C.TABLE_COLUMNS[C.SPLIT_TABLE], image_rows)
    write_csv_gz(out / C.CHEXPERT_TABLE, C.TABLE_COLUMNS[C.CHEXPERT_TABLE], (results[i]["labels"] for i in order))


def _generate_openi(out: Path, plans: list[StudyPlan], seed: int, image_size: int, faults: bool, workers: int,
                    start: float) -> dict:
    openi.prepare(out)
    chunks = _chunks(plans, CHUNK)
    args = (str(out), seed, image_size)
    results: list[dict] = []
    if workers == 1:
        for chunk in progress(chunks, desc="synth openi", unit="chunk"):
            results.extend(openi.make_openi_studies(chunk, *args))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = pool.map(openi.make_openi_studies, chunks, *([a] * len(chunks) for a in args))
            for part in progress(parts, desc="synth openi", total=len(chunks), unit="chunk"):
                results.extend(part)
    fault_rows = openi.inject_openi_faults(out, results, np.random.default_rng([seed, 3])) if faults else []
    openi.write_openi_tables(out, results, fault_rows)
    seconds = time.perf_counter() - start
    summary = {
        "root": str(out), "layout": "openi", "studies": len(results),
        "images": sum(len(r["images"]) for r in results), "patients": len(results), "faults": len(fault_rows),
        "format": "png", "image_size": image_size, "workers": workers, "seconds": round(seconds, 3),
        "studies_per_second": round(len(results) / seconds, 2) if seconds > 0 else float("inf"),
    }
    log.info("synthetic Open-i dataset: %(studies)d studies, %(images)d images in %(seconds).1f s", summary)
    return summary
