"""`format: table`: a CSV / parquet of image-report pairs through the index."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from txtrayalign.chexpert.files import read_official
from txtrayalign.cli import main as cli_main
from txtrayalign.constants import OBSERVATIONS
from txtrayalign.datasets.indexed import IMAGE_COLUMNS, STUDY_COLUMNS, hash_split
from txtrayalign.errors import InputError
from txtrayalign.index import build_index
from txtrayalign.text.cli import build_tables


def png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), 90, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def make_pairs(root: Path, rows: list[dict], name: str = "pairs.csv") -> Path:
    for row in rows:
        for key in ("filepath",):
            if row.get(key) and not row.get("_absent"):
                (root / row[key]).parent.mkdir(parents=True, exist_ok=True)
                (root / row[key]).write_bytes(png())
    df = pd.DataFrame([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows])
    path = root / name
    df.to_parquet(path) if name.endswith(".parquet") else df.to_csv(path, index=False)
    return path


ROWS = [
    {"filepath": "img/a/1.png", "caption": "FINDINGS: Clear lungs.\nIMPRESSION: Normal chest.", "pid": "anna",
     "sid": "s-1", "split": "train", "view": "PA"},
    {"filepath": "img/a/2.png", "caption": "FINDINGS: Clear lungs.\nIMPRESSION: Normal chest.", "pid": "anna",
     "sid": "s-1", "split": "train", "view": "LATERAL"},
    {"filepath": "img/b/1.png", "caption": "IMPRESSION: Small right pleural effusion.", "pid": "ben",
     "sid": "s-2", "split": "val", "view": "AP"},
    {"filepath": "img/c/1.png", "caption": "IMPRESSION: Cardiomegaly.", "pid": "cleo", "sid": "s-3",
     "split": "test", "view": ""},
]
COLUMNS = {"image": "filepath", "report_text": "caption", "patient_id": "pid", "study_id": "sid"}


@pytest.mark.parametrize("name", ["pairs.csv", "pairs.parquet"])
def test_pairs_with_text_ids_and_split(tmp_path, name):
    make_pairs(tmp_path, ROWS, name)
    images, studies, problems = build_index(tmp_path, "table", reports_dir=tmp_path / "out" / "reports",
                                            table={"path": name, "columns": COLUMNS})
    assert list(images.columns) == IMAGE_COLUMNS and list(studies.columns) == STUDY_COLUMNS and problems.empty
    # string ids are numbered in order of first appearance: anna 1, ben 2, cleo 3; s-1 1, s-2 2, s-3 3
    assert images[["dicom_id", "subject_id", "study_id", "path", "view", "split", "format"]].values.tolist() == [
        ["img_a_1", 1, 1, "img/a/1.png", "PA", "train", "png"],
        ["img_a_2", 1, 1, "img/a/2.png", "LATERAL", "train", "png"],
        ["img_b_1", 2, 2, "img/b/1.png", "AP", "validate", "png"],
        ["img_c_1", 3, 3, "img/c/1.png", "", "test", "png"]]
    assert studies["split"].tolist() == ["train", "validate", "test"]
    sections, _, text_problems = build_tables(studies, tmp_path, "impression")
    assert text_problems.empty
    assert sections["impression"].tolist() == ["Normal chest.", "Small right pleural effusion.", "Cardiomegaly."]
    assert sections["findings"].tolist()[0] == "Clear lungs."
    assert not (tmp_path / "out" / "labels.csv.gz").exists()


def test_defaults_report_paths_and_hash_split(tmp_path):
    for i in range(3):
        (tmp_path / f"r{i}.txt").write_text(f"IMPRESSION: report {i}.\n")
    rows = [{"image": f"x/{i}.png", "report_path": f"r{i // 2}.txt"} for i in range(5)]
    rows = [dict(r, filepath=r["image"]) for r in rows]
    make_pairs(tmp_path, rows)
    images, studies, problems = build_index(tmp_path, "table", reports_dir=tmp_path / "reports",
                                            table={"path": "pairs.csv"})
    # rows sharing a report file are one study; each study its own patient; hash split by patient
    assert images["study_id"].tolist() == [1, 1, 2, 2, 3] and (images["subject_id"] == images["study_id"]).all()
    assert studies["report_path"].tolist() == ["r0.txt", "r1.txt", "r2.txt"]
    assert (images["split"] == images["subject_id"].map(hash_split)).all() and problems.empty


def test_label_columns_become_the_official_table(tmp_path):
    rows = []
    for i, row in enumerate(ROWS):
        labels = {o: "" for o in OBSERVATIONS}
        labels["Cardiomegaly"] = "1" if i == 3 else "0"
        labels["Pleural Effusion"] = "1.0" if i == 2 else ""
        labels["No Finding"] = "1" if i < 2 else ""
        rows.append({**row, **labels})
    rows[1]["Edema"] = "-1"  # study s-1's two rows disagree: the labeller labels it
    make_pairs(tmp_path, rows)
    out = tmp_path / "index"
    args = ["index", "--root", str(tmp_path), "--format", "table", "--table", "pairs.csv", "--out-dir", str(out)]
    args += [f"--column={k}={v}" for k, v in COLUMNS.items()]
    assert cli_main(args) == 0
    official = read_official(str(out / "labels.csv.gz"))
    assert official["study_id"].tolist() == [2, 3]
    assert official.set_index("study_id").loc[2, "Pleural Effusion"] == 1.0
    assert official.set_index("study_id").loc[3, "Cardiomegaly"] == 1.0
    assert np.isnan(official.set_index("study_id").loc[3, "Edema"])
    problems = pd.read_parquet(out / "problems.parquet")
    assert problems[["kind", "study_id"]].values.tolist() == [["conflicting_labels", 1]]


def test_bad_rows_are_problems(tmp_path):
    rows = [dict(r) for r in ROWS]
    rows[3]["_absent"] = True  # the image file is not written
    rows[1]["caption"] = "IMPRESSION: something else."  # study s-1: two texts
    rows.append({"filepath": "img/d/1.png", "caption": "  ", "pid": "dan", "sid": "s-4", "split": "train"})
    make_pairs(tmp_path, rows)
    images, studies, problems = build_index(tmp_path, "table", reports_dir=tmp_path / "reports",
                                            table={"path": "pairs.csv", "columns": COLUMNS})
    assert set(zip(problems.kind, problems.study_id, strict=True)) == {
        ("conflicting_report", 1), ("missing_file", 3), ("no_report_text", 4)}
    assert images["dicom_id"].tolist() == ["img_b_1"] and studies["study_id"].tolist() == [2, 3]


@pytest.mark.parametrize(("columns", "edit", "message"), [
    ({"image": "path"}, None, r"pairs\.csv: missing column 'path' \(given for image\)"),
    ({}, None, r"pairs\.csv: missing column 'image'"),
    ({"image": "filepath"}, None, r"pairs\.csv: missing column 'report_text' or 'report_path'"),
    ({**COLUMNS, "split": "fold"}, None, r"missing column 'fold' \(given for split\)"),
    ({**COLUMNS, "imgae": "x"}, None, r"unknown column role\(s\) \['imgae'\]"),
    (COLUMNS, ("split", "holdout"), r"column 'split' row 2 has 'holdout'"),
    (COLUMNS, ("Edema", "1"), r"has 1 of the 14 label columns"),
])
def test_missing_or_bad_columns_are_errors_naming_them(tmp_path, columns, edit, message):
    rows = [dict(r) for r in ROWS]
    if edit:
        rows[0][edit[0]] = edit[1]
    make_pairs(tmp_path, rows)
    with pytest.raises(InputError, match=message):
        build_index(tmp_path, "table", reports_dir=tmp_path / "reports", table={"path": "pairs.csv", "columns": columns})


def test_cli_errors(tmp_path, capsys):
    out = str(tmp_path / "o")
    assert cli_main(["index", "--root", str(tmp_path), "--format", "table", "--out-dir", out]) == 2
    assert "--format table needs --table FILE" in capsys.readouterr().err
    assert cli_main(["index", "--root", str(tmp_path), "--format", "table", "--table", "nope.csv", "--out-dir", out]) == 2
    assert "nope.csv (format: table) is not a file" in capsys.readouterr().err
    assert cli_main(["index", "--root", str(tmp_path), "--format", "jpg", "--table", "x.csv", "--out-dir", out]) == 2
    assert "options of --format table" in capsys.readouterr().err
