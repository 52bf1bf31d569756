"""`format: openi`: the IU X-ray collection (original distribution and R2Gen layout) through the index.

Real reports: the 2,069 XML files of ../shared/testdata/reports/iu_dev/xml (linked, never copied into
the repository) with tiny PNGs written under their real parentImage names, and the real study 3
(reports/iu_xml/3.xml with images/iu_CXR3_IM-1384-1001.png).
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from txtrayalign import constants as C
from txtrayalign.cli import main as cli_main
from txtrayalign.datasets.indexed import IMAGE_COLUMNS, PROBLEM_COLUMNS, STUDY_COLUMNS, hash_split
from txtrayalign.datasets.iu import report_text
from txtrayalign.errors import InputError
from txtrayalign.index import build_index
from txtrayalign.openi import read_openi_report
from txtrayalign.text.cli import build_tables

PARENT_IMAGE = re.compile(r'<parentImage id="([^"]+)"')


def tiny_png(value: int = 128) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def xml_report(uid: int, sections: dict[str, str], images: list[str]) -> str:
    """A report in the Open-i schema (the elements the collection's files have)."""
    abstract = "".join(
        f'<AbstractText Label="{label}">{text}</AbstractText>' if text else f'<AbstractText Label="{label}"/>'
        for label, text in sections.items()
    )
    parents = "".join(f'<parentImage id="{i}"><figureId>F1</figureId></parentImage>' for i in images)
    return (f'<?xml version="1.0" encoding="utf-8"?><eCitation><meta type="rr"/><uId id="CXR{uid}"/>'
            f"<MedlineCitation><Article><Abstract>{abstract}</Abstract></Article></MedlineCitation>"
            f"<MeSH><major>normal</major></MeSH>{parents}</eCitation>")


def check_contract(images: pd.DataFrame, studies: pd.DataFrame, problems: pd.DataFrame) -> None:
    assert list(images.columns) == IMAGE_COLUMNS
    assert list(studies.columns) == STUDY_COLUMNS
    assert list(problems.columns) == PROBLEM_COLUMNS
    assert images["dicom_id"].is_unique and studies["study_id"].is_unique
    assert images["subject_id"].dtype == "int64" and studies["study_id"].dtype == "int64"
    assert (images["subject_id"] == images["study_id"]).all(), "IU: each study is its own patient"
    assert set(images["group"]) <= set(C.GROUPS) and set(studies["group"]) <= set(C.GROUPS)
    assert set(images["split"]) <= set(C.SPLITS) and (images["format"] == "png").all()


@pytest.fixture
def iu_dev_tree(shared_testdata, tmp_path) -> tuple[Path, dict[int, list[str]]]:
    xml_dir = shared_testdata / "reports" / "iu_dev" / "xml"
    if not xml_dir.is_dir():
        pytest.skip(f"{xml_dir} absent (the real IU X-ray development reports)")
    root = tmp_path / "iu"
    root.mkdir()
    (root / "ecgen-radiology").symlink_to(xml_dir, target_is_directory=True)
    (root / "NLMCXR_png").mkdir()
    png = tiny_png()
    ids: dict[int, list[str]] = {}
    for path in xml_dir.glob("*.xml"):
        ids[int(path.stem)] = PARENT_IMAGE.findall(path.read_text(encoding="utf-8"))
        for image_id in ids[int(path.stem)]:
            (root / "NLMCXR_png" / f"{image_id}.png").write_bytes(png)
    return root, ids


def test_real_reports_and_their_image_names(iu_dev_tree, tmp_path):
    root, ids = iu_dev_tree
    assert len(ids) == 2069
    gone = sorted(ids)[:3]
    for uid in gone:  # one image of three studies deleted, and a stray PNG no report names
        (root / "NLMCXR_png" / f"{ids[uid][0]}.png").unlink()
    (root / "NLMCXR_png" / "CXR999999_IM-0000-1001.png").write_bytes(tiny_png())
    images, studies, problems = build_index(root, "openi", reports_dir=tmp_path / "reports")
    check_contract(images, studies, problems)
    n_images = sum(len(v) for v in ids.values())
    assert len(studies) == 2069 and len(images) == n_images - 3
    assert sorted(studies["study_id"]) == sorted(ids)
    kinds = problems["kind"].value_counts().to_dict()
    assert kinds == {"missing_file": 3, "no_report": 1}
    assert sorted(problems.loc[problems.kind == "missing_file", "dicom_id"]) == sorted(ids[u][0] for u in gone)
    assert problems.loc[problems.kind == "no_report", "path"].tolist() == ["NLMCXR_png/CXR999999_IM-0000-1001.png"]
    # images carry their real names, study and (hash) split; views unknown without indiana_projections.csv
    expected = {(i, uid) for uid, names in ids.items() for i in names} - {(ids[u][0], u) for u in gone}
    assert set(zip(images.dicom_id, images.study_id, strict=True)) == expected
    assert (images["path"] == "NLMCXR_png/" + images["dicom_id"] + ".png").all()
    assert (images["split"] == images["study_id"].map(hash_split)).all() and (images["view"] == "").all()
    # the written report is the XML's sections in header form, and the sections stage gets them back
    report = read_openi_report(root / "ecgen-radiology" / "1.xml")
    row = studies.set_index("study_id").loc[1]
    assert Path(row.report_path).read_text(encoding="utf-8") == report_text(report.sections)
    sections, sentences, text_problems = build_tables(studies, root, "both")
    assert text_problems.empty
    by_study = sections.set_index("study_id")
    for uid in (1, 5, max(ids)):
        xml = read_openi_report(root / "ecgen-radiology" / f"{uid}.xml").sections
        assert by_study.loc[uid, "findings"] == xml["findings"]
        assert (by_study.loc[uid, "impression"] or None) == xml.get("impression")
        assert by_study.loc[uid, "label_text"] == xml.get("impression", xml["findings"])


def test_cli_on_real_reports_writes_the_tables(iu_dev_tree, tmp_path):
    root, ids = iu_dev_tree
    out = tmp_path / "index"
    assert cli_main(["index", "--root", str(root), "--format", "openi", "--out-dir", str(out)]) == 0
    images = pd.read_parquet(out / "images.parquet")
    studies = pd.read_parquet(out / "studies.parquet")
    assert len(images) == sum(len(v) for v in ids.values()) and len(studies) == 2069
    assert sorted(p.name for p in (out / "reports").iterdir()) == sorted(f"{u}.txt" for u in ids)
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no temporary folder left"


def test_study_3_with_its_real_image(shared_testdata, tmp_path):
    xml = shared_testdata / "reports" / "iu_xml" / "3.xml"
    png = shared_testdata / "images" / "iu_CXR3_IM-1384-1001.png"
    if not (xml.is_file() and png.is_file()):
        pytest.skip("../shared/testdata IU study 3 absent")
    root = tmp_path / "iu"
    (root / "ecgen-radiology").mkdir(parents=True)
    (root / "NLMCXR_png").mkdir()
    shutil.copy(xml, root / "ecgen-radiology" / "3.xml")
    shutil.copy(png, root / "NLMCXR_png" / png.name.removeprefix("iu_"))
    images, studies, problems = build_index(root, "openi", reports_dir=tmp_path / "reports")
    assert images[["dicom_id", "study_id", "path"]].values.tolist() == [
        ["CXR3_IM-1384-1001", 3, "NLMCXR_png/CXR3_IM-1384-1001.png"]]
    assert problems[["kind", "dicom_id"]].values.tolist() == [["missing_file", "CXR3_IM-1384-2001"]]
    text = Path(studies.report_path[0]).read_text(encoding="utf-8")
    assert text.startswith("INDICATION: rib pain after a XXXX") and "FINDINGS" not in text
    assert "\n\nIMPRESSION: No displaced rib fractures, pneumothorax, or pleural effusion identified." in text
    # the images stage reads it unchanged: its shard is the study's group, the pixels are the PNG's
    index = tmp_path / "images.parquet"
    images.to_parquet(index)
    h5, skipped = tmp_path / "shard.h5", tmp_path / "skipped.parquet"
    assert cli_main(["images", "--index", str(index), "--root", str(root), "--shard", images.group[0],
                     "--size", "64", "--out", str(h5), "--skipped", str(skipped)]) == 0
    with h5py.File(h5, "r") as f:
        assert [d.decode() for d in f["dicom_id"][()]] == ["CXR3_IM-1384-1001"]
        stored = f["images"][0]
    source = np.asarray(Image.open(png).convert("L").resize((64, 64), Image.BILINEAR), dtype=float)
    assert stored.shape == (64, 64) and np.corrcoef(stored.ravel(), source.ravel())[0, 1] > 0.95


def write_original(root: Path, reports: dict[str, str], pngs: list[str]) -> Path:
    (root / "ecgen-radiology").mkdir(parents=True)
    (root / "NLMCXR_png").mkdir()
    for name, text in reports.items():
        (root / "ecgen-radiology" / name).write_text(text, encoding="utf-8")
    for image_id in pngs:
        (root / "NLMCXR_png" / f"{image_id}.png").write_bytes(tiny_png())
    return root


def test_bad_input_is_a_problem_row_with_its_reason(tmp_path):
    good = {"FINDINGS": "Clear lungs.", "IMPRESSION": "Normal chest."}
    root = write_original(tmp_path / "iu", {
        "1.xml": xml_report(1, good, ["CXR1_IM-0001-1001", "CXR1_IM-0001-2001"]),
        "2.xml": "FINDINGS: this is a text file, not XML",
        "3.xml": xml_report(3, {"COMPARISON": "None.", "INDICATION": "cough", "FINDINGS": "", "IMPRESSION": ""},
                            ["CXR3_IM-0003-1001"]),
        "4.xml": xml_report(4, good, ["CXR4_IM-0004-1001", "CXR4_IM-0004-2001"]),
        "5.xml": xml_report(5, {"FINDINGS": "Small effusion."}, []),
    }, ["CXR1_IM-0001-1001", "CXR1_IM-0001-2001", "CXR3_IM-0003-1001", "CXR4_IM-0004-1001", "CXR7_IM-0007-1001"])
    images, studies, problems = build_index(root, "openi", reports_dir=tmp_path / "reports")
    check_contract(images, studies, problems)
    rows = {(r.kind, r.path, r.dicom_id): r.message for r in problems.itertuples()}
    assert set(rows) == {
        ("bad_xml", "ecgen-radiology/2.xml", ""),
        ("no_findings_or_impression", "ecgen-radiology/3.xml", ""),
        ("missing_file", "NLMCXR_png/CXR4_IM-0004-2001.png", "CXR4_IM-0004-2001"),
        ("no_report", "NLMCXR_png/CXR7_IM-0007-1001.png", "CXR7_IM-0007-1001"),
        ("study_without_images", "ecgen-radiology/5.xml", ""),
    }
    assert "not well-formed XML" in rows[("bad_xml", "ecgen-radiology/2.xml", "")]
    assert "named by ecgen-radiology/4.xml" in rows[("missing_file", "NLMCXR_png/CXR4_IM-0004-2001.png",
                                                     "CXR4_IM-0004-2001")]
    assert "no XML report names this image" in rows[("no_report", "NLMCXR_png/CXR7_IM-0007-1001.png",
                                                     "CXR7_IM-0007-1001")]
    # study 3 (no findings, no impression) is left out with its image, which is not a "no_report" too
    assert sorted(studies["study_id"]) == [1, 4, 5]
    assert sorted(images["dicom_id"]) == ["CXR1_IM-0001-1001", "CXR1_IM-0001-2001", "CXR4_IM-0004-1001"]


def test_views_from_the_projections_table(tmp_path):
    root = write_original(tmp_path / "iu", {
        "1.xml": xml_report(1, {"FINDINGS": "Clear."}, ["CXR1_IM-0001-4001", "CXR1_IM-0001-3001"]),
        "2.xml": xml_report(2, {"IMPRESSION": "Normal."}, ["CXR2_IM-0652-1001"]),
    }, ["CXR1_IM-0001-4001", "CXR1_IM-0001-3001", "CXR2_IM-0652-1001"])
    pd.DataFrame({"uid": [1, 1, 2, 2], "projection": ["Frontal", "Lateral", "Frontal", "Lateral"],
                  "filename": ["1_IM-0001-4001.dcm.png", "1_IM-0001-3001.dcm.png", "2_IM-0652-1001.dcm.png",
                               "2_IM-0652-1001.dcm.png"]}).to_csv(root / "indiana_projections.csv", index=False)
    images, _, problems = build_index(root, "openi", reports_dir=tmp_path / "reports")
    assert images.set_index("dicom_id")["view"].to_dict() == {
        "CXR1_IM-0001-4001": "Frontal", "CXR1_IM-0001-3001": "Lateral", "CXR2_IM-0652-1001": ""}
    assert problems[["kind", "dicom_id"]].values.tolist() == [["conflicting_view", "CXR2_IM-0652-1001"]]
    assert "'Frontal' and 'Lateral'" in problems.message[0]


def write_r2gen(base: Path, entries: dict[str, list[tuple[str, str, int]]], on_disk: list[str]) -> Path:
    """R2Gen's iu_xray/: annotation.json ({split: [{id, report, image_path, split}]}) and images/."""
    data = {key: [{"id": sid, "report": report, "image_path": [f"{sid}/{i}.png" for i in range(n)], "split": key}
                  for sid, report, n in rows] for key, rows in entries.items()}
    base.mkdir(parents=True)
    (base / "annotation.json").write_text(json.dumps(data), encoding="utf-8")
    for rel in on_disk:
        (base / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / "images" / rel).write_bytes(tiny_png())
    return base


def test_r2gen_layout_split_text_and_problems(tmp_path):
    root = tmp_path / "data"
    write_r2gen(root / "iu_xray", {
        "train": [("CXR10_IM-0010", "The heart is normal. No effusion.", 2), ("CXR11_IM-0011", "Clear lungs.", 2)],
        "val": [("CXR12_IM-0012", "Mild cardiomegaly.", 2)],
        "test": [("CXR13_IM-0013", "  ", 2), ("CXR14_IM-0014", "No pneumothorax.", 2)],
    }, ["CXR10_IM-0010/0.png", "CXR10_IM-0010/1.png", "CXR11_IM-0011/0.png", "CXR12_IM-0012/0.png",
        "CXR12_IM-0012/1.png", "CXR13_IM-0013/0.png", "CXR14_IM-0014/0.png", "CXR14_IM-0014/1.png",
        "CXR99_IM-0099/0.png"])
    (root / "ecgen-radiology").mkdir()  # the original XML of study 14: its sections win over the annotation
    (root / "ecgen-radiology" / "14.xml").write_text(
        xml_report(14, {"FINDINGS": "No pneumothorax.", "IMPRESSION": "No acute disease."}, []), encoding="utf-8")
    images, studies, problems = build_index(root, "openi", reports_dir=tmp_path / "reports")
    check_contract(images, studies, problems)
    assert studies.set_index("study_id")["split"].to_dict() == {10: "train", 11: "train", 12: "validate",
                                                                 14: "test"}
    assert images.set_index("dicom_id")["path"].to_dict()["CXR12_IM-0012_1"] == "iu_xray/images/CXR12_IM-0012/1.png"
    assert len(images) == 7 and (images["study_id"].map({10: 0, 11: 0, 12: 0, 14: 0}).notna()).all()
    rows = set(zip(problems.kind, problems.path, strict=True))
    assert rows == {("missing_file", "iu_xray/images/CXR11_IM-0011/1.png"),
                    ("no_findings_or_impression", "iu_xray/annotation.json"),
                    ("no_report", "iu_xray/images/CXR13_IM-0013/0.png"),
                    ("no_report", "iu_xray/images/CXR99_IM-0099/0.png")}
    texts = {s: Path(p).read_text(encoding="utf-8") for s, p in zip(studies.study_id, studies.report_path, strict=True)}
    assert texts[10] == "FINDINGS: The heart is normal. No effusion.\n"
    assert texts[14] == "FINDINGS: No pneumothorax.\n\nIMPRESSION: No acute disease.\n"


def test_no_usable_image_is_an_error_naming_root_and_format(tmp_path):
    root = write_original(tmp_path / "iu", {"1.xml": xml_report(1, {"FINDINGS": "Clear."}, ["CXR1_IM-0001-1001"])},
                          [])
    with pytest.raises(InputError, match=rf"{root}: no usable image \(format: openi\)"):
        build_index(root, "openi", reports_dir=tmp_path / "reports")
    out = tmp_path / "out"
    assert cli_main(["index", "--root", str(root), "--format", "openi", "--out-dir", str(out)]) == 2
    assert not (out / "images.parquet").exists()


def test_a_root_that_is_not_open_i(tmp_path, capsys):
    (tmp_path / "files").mkdir()
    assert cli_main(["index", "--root", str(tmp_path), "--format", "openi", "--out-dir", str(tmp_path / "o")]) == 2
    assert "not an IU X-ray (Open-i) root (format: openi): expected ecgen-radiology/" in capsys.readouterr().err


def test_an_image_named_by_two_reports_is_left_out_with_a_problem(tmp_path):
    shared = "CXR1_IM-0001-1001"
    root = write_original(tmp_path / "iu", {
        "1.xml": xml_report(1, {"FINDINGS": "Clear."}, [shared, "CXR1_IM-0001-2001"]),
        "2.xml": xml_report(2, {"FINDINGS": "Clear."}, [shared, "CXR2_IM-0002-1001"]),
    }, [shared, "CXR1_IM-0001-2001", "CXR2_IM-0002-1001"])
    images, _, problems = build_index(root, "openi", reports_dir=tmp_path / "reports")
    assert sorted(images["dicom_id"]) == ["CXR1_IM-0001-2001", "CXR2_IM-0002-1001"]
    assert problems[["kind", "dicom_id"]].values.tolist() == [["duplicate_dicom_id", shared]]
    assert "study_id=1" in problems.message[0] and "study_id=2" in problems.message[0]
