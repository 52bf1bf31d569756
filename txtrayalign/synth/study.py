"""Make one synthetic study: labels, views, report, images; write its files and return its rows.

Everything random about study `index` comes from the generator seeded with (seed, index), so the
result does not depend on which worker makes it or in what order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from txtrayalign.synth.demographics import fainter
from txtrayalign.synth.dicom import DicomStyle, write_dicom
from txtrayalign.synth.labels import SUPPORT_DEVICES, StudyLabels, draw_labels
from txtrayalign.synth.plan import StudyPlan
from txtrayalign.synth.render import render, to_uint8
from txtrayalign.synth.reports import ReportRecord, exam_names, write_report

FORMATS = ("jpg", "dicom", "both")
VIEW_MEANING = {"PA": "postero-anterior", "AP": "antero-posterior", "LATERAL": "lateral", "LL": "left lateral"}
JPEG_QUALITY = 95


@dataclass(frozen=True)
class Options:
    root: str
    seed: int
    fmt: str
    image_size: int
    faint_studies: frozenset = frozenset()  # study_ids drawn fainter (the planted disparity)
    faint_scale: float = 1.0


@dataclass
class StudyContent:
    """What a study is, before anything is written: the structured truth of its files."""

    labels: StudyLabels
    views: list[str]
    portable: bool
    report: ReportRecord


def draw_views(labels: StudyLabels, rng: np.random.Generator) -> tuple[list[str], bool]:
    """The study's views; sick patients and those with devices are more often portable AP."""
    devices = SUPPORT_DEVICES in labels.findings and labels.findings[SUPPORT_DEVICES].present
    p_portable = 0.75 if devices else 0.2 if labels.no_finding else 0.4
    portable = bool(rng.random() < p_portable)
    u = rng.random()
    if portable:
        views = ["AP"] if u < 0.85 else ["AP", "LATERAL"]
    else:
        views = (["PA", "LATERAL"] if u < 0.78 else ["PA"] if u < 0.86 else ["PA", "LATERAL", "LATERAL"]
                 if u < 0.93 else ["PA", "PA", "LATERAL"])
    if rng.random() < 0.05:
        views = ["LL" if v == "LATERAL" else v for v in views]
    return views, portable


def study_content(index: int, seed: int) -> StudyContent:
    """Labels, views and report of study `index` (deterministic in (seed, index))."""
    rng = np.random.default_rng([seed, index])
    labels = draw_labels(rng)
    views, portable = draw_views(labels, rng)
    report = write_report(labels, views, portable, rng)
    return StudyContent(labels, views, portable, report)


def image_seed(seed: int, index: int, k: int) -> list[int]:
    return [seed, index, k]


def image_path(plan: StudyPlan, dicom_id: str, ext: str) -> str:
    return f"{plan.study_dir}/{dicom_id}.{ext}"


def make_study(plan: StudyPlan, opts: Options) -> dict:
    """Write the study's report and images under opts.root; return its table rows."""
    content = study_content(plan.index, opts.seed)
    root = Path(opts.root)
    (root / plan.study_dir).mkdir(parents=True, exist_ok=True)
    (root / plan.report_path).write_bytes(content.report.text.encode("utf-8"))
    exam, _ = exam_names(content.views, content.portable)
    orientation = "Recumbent" if content.portable and plan.index % 3 else "Erect"
    size = opts.image_size
    findings = content.labels.findings
    if plan.study_id in opts.faint_studies:
        findings = fainter(findings, opts.faint_scale)
    images: list[dict] = []
    for k, view in enumerate(content.views):
        did = plan.dicom_ids[k]
        img = render(findings, view, size, image_seed(opts.seed, plan.index, k))
        if opts.fmt in ("jpg", "both"):
            Image.fromarray(to_uint8(img), mode="L").save(root / image_path(plan, did, "jpg"), format="JPEG",
                                                          quality=JPEG_QUALITY)
        if opts.fmt in ("dicom", "both"):
            style = DicomStyle.draw(np.random.default_rng([opts.seed, plan.index, k, 7]))
            write_dicom(root / image_path(plan, did, "dcm"), img, style, subject_id=plan.subject_id,
                        study_id=plan.study_id, dicom_id=did, view=view, study_date=plan.study_date,
                        study_time=plan.study_time, instance=k + 1, description=exam)
        images.append({
            "dicom_id": did, "subject_id": plan.subject_id, "study_id": plan.study_id,
            "path": image_path(plan, did, "jpg" if opts.fmt == "jpg" else "dcm"),
            "PerformedProcedureStepDescription": exam, "ViewPosition": view, "Rows": size, "Columns": size,
            "StudyDate": plan.study_date, "StudyTime": plan.study_time,
            "ProcedureCodeSequence_CodeMeaning": exam, "ViewCodeSequence_CodeMeaning": VIEW_MEANING[view],
            "PatientOrientationCodeSequence_CodeMeaning": orientation, "split": plan.split,
        })
    labels = {"subject_id": plan.subject_id, "study_id": plan.study_id, **content.labels.row()}
    return {"images": images, "labels": labels, "label_section": content.report.label_section}


def make_studies(plans: list[StudyPlan], opts: Options) -> list[dict]:
    """A chunk of studies (one task of the process pool)."""
    return [make_study(p, opts) for p in plans]
