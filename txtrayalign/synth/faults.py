"""Break a few files on purpose, for the reliability tests of later stages.

The broken files stay in the tables like real entries; `faults.csv` lists them with columns
kind, path (relative to the root), subject_id, study_id, dicom_id (blank for report faults).
For `missing_report`, path is the report that is absent and dicom_id one of the study's images.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import numpy as np
import pydicom

from txtrayalign.synth.plan import StudyPlan
from txtrayalign.utils import atomic_path

log = logging.getLogger(__name__)

FAULTS_CSV = "faults.csv"
FAULT_COLUMNS = ["kind", "path", "subject_id", "study_id", "dicom_id"]
IMAGE_FAULTS = {"truncated_jpg": ("jpg",), "truncated_dicom": ("dicom",), "zero_byte_image": ("jpg", "dicom"),
                "dicom_no_pixels": ("dicom",)}
REPORT_FAULTS = ("empty_report", "non_utf8_report", "missing_report")
TRUNCATE_KEEP = 0.4  # share of bytes a truncated file keeps


def kinds_for(fmt: str) -> list[str]:
    """The fault kinds that apply to a dataset of this format."""
    have = {"jpg": {"jpg"}, "dicom": {"dicom"}, "both": {"jpg", "dicom"}}[fmt]
    return [k for k, needs in IMAGE_FAULTS.items() if have.intersection(needs)] + list(REPORT_FAULTS)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * TRUNCATE_KEEP))])


def _strip_pixels(path: Path) -> None:
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path, enforce_file_format=True)


def _latin1(path: Path) -> None:
    text = path.read_bytes().decode("utf-8")
    # A name the anonymiser missed, in latin-1: as long as the `___` it replaces, so lines keep their width.
    text = text.replace("___", "Zo\u00eb", 1) if "___" in text else text + " Signed: Zo\u00eb\n"
    path.write_bytes(text.encode("latin-1"))


def inject_faults(root: Path, plans: list[StudyPlan], images: dict[int, list[str]], fmt: str, seed: int,
                  per_kind: int = 2) -> list[dict]:
    """Break `per_kind` studies' files for each kind (distinct studies); return the faults.csv rows."""
    kinds = kinds_for(fmt)
    order = np.random.default_rng([seed, 99]).permutation(len(plans))
    wanted = [k for k in kinds for _ in range(per_kind)]
    if len(wanted) > len(plans):
        log.warning("only %d studies for %d faults: some kinds get fewer", len(plans), len(wanted))
        wanted = [k for i in range(per_kind) for k in kinds][: len(plans)]
    rows: list[dict] = []
    for n, (kind, i) in enumerate(zip(wanted, order, strict=False)):
        plan = plans[int(i)]
        did = images[plan.study_id][0]
        if kind in IMAGE_FAULTS:
            ext = {"truncated_jpg": "jpg", "truncated_dicom": "dcm", "dicom_no_pixels": "dcm"}.get(kind)
            if ext is None:  # zero-byte: alternate between the formats present
                exts = [e for e, f in (("jpg", "jpg"), ("dcm", "dicom")) if fmt in (f, "both")]
                ext = exts[n % len(exts)]
            rel = f"{plan.study_dir}/{did}.{ext}"
            path = root / rel
            if kind == "zero_byte_image":
                path.write_bytes(b"")
            elif kind == "dicom_no_pixels":
                _strip_pixels(path)
            else:
                _truncate(path)
            rows.append({"kind": kind, "path": rel, "subject_id": plan.subject_id, "study_id": plan.study_id,
                         "dicom_id": did})
            continue
        path = root / plan.report_path
        if kind == "empty_report":
            path.write_bytes(b"")
        elif kind == "non_utf8_report":
            _latin1(path)
        else:
            path.unlink()
        rows.append({"kind": kind, "path": plan.report_path, "subject_id": plan.subject_id,
                     "study_id": plan.study_id, "dicom_id": did if kind == "missing_report" else ""})
    return rows


def write_faults_csv(root: Path, rows: list[dict]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, FAULT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path = root / FAULTS_CSV
    with atomic_path(path, suffix=".csv.tmp") as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    return path


def read_faults_csv(root: Path) -> list[dict]:
    with open(root / FAULTS_CSV, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
