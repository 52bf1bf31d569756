"""`txtrayalign synth --layout openi`: the synthetic studies in the IU X-ray (Open-i) layout."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from txtrayalign.cli import main as cli_main
from txtrayalign.constants import OBSERVATIONS
from txtrayalign.index import build_index
from txtrayalign.openi import read_openi_report
from txtrayalign.synth import generate
from txtrayalign.synth.plan import plan_dataset
from txtrayalign.synth.render import render, to_uint8
from txtrayalign.synth.study import image_seed, study_content

STUDIES, SEED, SIZE = 30, 5, 64


@pytest.fixture(scope="module")
def openi_root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("openi")
    generate(out, studies=STUDIES, seed=SEED, image_size=SIZE, faults=True, layout="openi")
    return out


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_reports_are_open_i_xml_with_the_studies_sections(openi_root):
    with open(openi_root / "faults.csv", newline="") as fh:
        broken = {r["path"] for r in csv.DictReader(fh) if r["kind"] in ("bad_xml", "no_findings_or_impression")}
    for plan in plan_dataset(STUDIES, SEED):
        uid = plan.index + 1
        rel = f"ecgen-radiology/{uid}.xml"
        if rel in broken:
            continue
        report = read_openi_report(openi_root / rel)
        content = study_content(plan.index, SEED)
        sections = content.report.sections
        assert report.uid == uid
        def expected(text):
            return " ".join(text.replace("___", "XXXX").split()) if text else None

        assert report.sections.get("impression") == expected(sections.get("impression"))
        # MIMIC's untitled last paragraph becomes FINDINGS; an impression-only report has no findings
        assert report.sections.get("findings") == expected(sections.get("findings") or sections.get("last_paragraph"))
        assert report.sections.get("findings") or report.sections.get("impression")
        assert "___" not in "".join(report.sections.values())
        assert len(report.images) == len(content.views)
        assert all(i.startswith(f"CXR{uid}_IM-") for i in report.images)


def test_images_carry_the_same_signs_as_the_mimic_twin(openi_root):
    """The PNG is exactly the renderer's picture of the study (the MIMIC layout saves it as JPEG)."""
    projections = pd.read_csv(openi_root / "indiana_projections.csv")
    view_of = dict(zip("CXR" + projections.filename.str.removesuffix(".dcm.png"), projections.projection,
                       strict=True))
    for plan in plan_dataset(STUDIES, SEED)[:6]:
        content = study_content(plan.index, SEED)
        report = read_openi_report(openi_root / f"ecgen-radiology/{plan.index + 1}.xml")
        for k, (image_id, view) in enumerate(zip(report.images, content.views, strict=True)):
            path = openi_root / "NLMCXR_png" / f"{image_id}.png"
            if not path.exists():
                continue  # the missing_file fault
            expected = to_uint8(render(content.labels.findings, view, SIZE, image_seed(SEED, plan.index, k)))
            assert np.array_equal(np.asarray(Image.open(path)), expected)
            assert view_of[image_id] == ("Lateral" if view in ("LATERAL", "LL") else "Frontal")


def test_labels_table_is_the_drawn_truth(openi_root):
    labels = pd.read_csv(openi_root / "labels.csv")
    assert list(labels.columns) == ["uid", *OBSERVATIONS] and len(labels) == STUDIES
    for plan in plan_dataset(STUDIES, SEED)[:10]:
        row = labels.set_index("uid").loc[plan.index + 1]
        truth = study_content(plan.index, SEED).labels.row()
        assert np.allclose(row.to_numpy(float), [truth[o] for o in OBSERVATIONS], equal_nan=True)


def test_deterministic_and_independent_of_workers(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    generate(a, studies=20, seed=2, image_size=48, faults=True, layout="openi", workers=1)
    generate(b, studies=20, seed=2, image_size=48, faults=True, layout="openi", workers=2)
    da, db = digest(a), digest(b)
    da.pop(".txtrayalign-synth.json"), db.pop(".txtrayalign-synth.json")
    assert da == db and len(da) > 40


def test_index_finds_exactly_the_faults(openi_root, tmp_path):
    images, studies, problems = build_index(openi_root, "openi", reports_dir=tmp_path / "reports")
    with open(openi_root / "faults.csv", newline="") as fh:
        faults = list(csv.DictReader(fh))
    bad_xml = next(f for f in faults if f["kind"] == "bad_xml")
    # the unreadable report's own images are then images no report names
    orphans = {f"NLMCXR_png/{p.name}" for p in (openi_root / "NLMCXR_png").glob(f"CXR{bad_xml['study_id']}_IM-*")}
    expected = {(f["kind"], f["path"]) for f in faults} | {("no_report", p) for p in orphans}
    assert set(zip(problems.kind, problems.path, strict=True)) == expected
    assert len(studies) == STUDIES - 2
    assert (images["view"] != "").all(), "views come from indiana_projections.csv"


def test_cli_refuses_foreign_data(tmp_path, capsys):
    (tmp_path / "ecgen-radiology").mkdir()
    (tmp_path / "ecgen-radiology" / "1.xml").write_text("<eCitation/>")
    assert cli_main(["synth", "--layout", "openi", "--out", str(tmp_path), "--studies", "10", "--seed", "0"]) == 2
    assert (tmp_path / "ecgen-radiology" / "1.xml").read_text() == "<eCitation/>"
