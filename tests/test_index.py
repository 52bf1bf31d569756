"""The index stage: MIMIC tables, a bare files/ tree, broken tables and files, the CLI."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from txtrayalign import constants as C
from txtrayalign.cli import main as cli_main
from txtrayalign.datasets.indexed import IMAGE_COLUMNS, PROBLEM_COLUMNS, STUDY_COLUMNS, TableError, hash_split
from txtrayalign.errors import InputError
from txtrayalign.index import build_index

# (subject, study, dicom_id) of a tiny dataset: 3 patients in 2 groups
IMAGES = [
    (10000032, 50414267, "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014"),
    (10000032, 50414267, "174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962"),
    (10000032, 53189527, "2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab"),
    (10000764, 57375967, "096052b7-d256dc40-453a102b-fa7d01c6-1b22c6b4"),
    (11000183, 51076722, "3f8f3b48-5e8a0c2e-1f0e1e5d-6a7b8c9d-0e1f2a3b"),
]
VIEWS = ["PA", "LATERAL", "AP", "AP", ""]
SPLITS = ["train", "train", "train", "validate", "test"]


def rel_image(subject: int, study: int, dicom_id: str, ext: str) -> str:
    return f"files/p{str(subject)[:2]}/p{subject}/s{study}/{dicom_id}.{ext}"


def make_tree(root: Path, exts: tuple[str, ...] = ("jpg",), reports: bool = True) -> Path:
    for subject, study, dicom_id in IMAGES:
        for ext in exts:
            path = root / rel_image(subject, study, dicom_id, ext)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"not decoded by the index stage")
        if reports:
            (root / f"files/p{str(subject)[:2]}/p{subject}/s{study}.txt").write_text("FINDINGS: clear.\n")
    return root


def write_table(root: Path, name: str, rows: list[dict], columns: list[str] | None = None) -> Path:
    df = pd.DataFrame(rows, columns=columns or C.TABLE_COLUMNS[name])
    df.to_csv(root / name, index=False, compression="gzip")
    return root / name


def write_tables(root: Path) -> None:
    write_table(
        root,
        C.RECORD_LIST,
        [
            {"subject_id": s, "study_id": t, "dicom_id": d, "path": rel_image(s, t, d, "dcm")}
            for s, t, d in IMAGES
        ],
    )
    studies = sorted({(s, t) for s, t, _ in IMAGES})
    write_table(
        root,
        C.STUDY_LIST,
        [{"subject_id": s, "study_id": t, "path": f"files/p{str(s)[:2]}/p{s}/s{t}.txt"} for s, t in studies],
    )
    write_table(
        root,
        C.METADATA,
        [
            {"dicom_id": d, "subject_id": s, "study_id": t, "ViewPosition": v, "Rows": 3056, "Columns": 2544}
            for (s, t, d), v in zip(IMAGES, VIEWS, strict=True)
        ],
    )
    write_table(
        root,
        C.SPLIT_TABLE,
        [
            {"dicom_id": d, "study_id": t, "subject_id": s, "split": sp}
            for (s, t, d), sp in zip(IMAGES, SPLITS, strict=True)
        ],
    )


def check_contract(images: pd.DataFrame, studies: pd.DataFrame, problems: pd.DataFrame) -> None:
    assert list(images.columns) == IMAGE_COLUMNS
    assert list(studies.columns) == STUDY_COLUMNS
    assert list(problems.columns) == PROBLEM_COLUMNS
    assert images["subject_id"].dtype == "int64" and images["study_id"].dtype == "int64"
    assert studies["subject_id"].dtype == "int64" and studies["study_id"].dtype == "int64"
    assert images["dicom_id"].is_unique
    assert set(images["split"]) <= set(C.SPLITS) and set(studies["split"]) <= set(C.SPLITS)
    assert (images["group"] == images["subject_id"].map(C.group_of)).all()
    assert (images["path"].str.split("/").str[1] == images["group"]).all()
    assert images.groupby("subject_id")["split"].nunique().max() == 1, "a patient in two splits"


# ------------------------------------------------------------------------------------ with tables


def test_tables_give_views_splits_and_jpg_paths(tmp_path):
    root = make_tree(tmp_path, exts=("jpg", "dcm"))
    write_tables(root)
    images, studies, problems = build_index(root, "auto")
    check_contract(images, studies, problems)
    assert (images["format"] == "jpg").all() and images["path"].str.endswith(".jpg").all()
    by_id = images.set_index("dicom_id")
    assert [by_id.loc[d, "view"] for _, _, d in IMAGES] == VIEWS
    assert [by_id.loc[d, "split"] for _, _, d in IMAGES] == SPLITS
    assert len(studies) == 4 and problems.empty
    dcm, _, _ = build_index(root, "dcm")
    assert dcm["path"].str.endswith(".dcm").all() and (dcm["format"] == "dcm").all()


def test_file_in_table_but_not_on_disk_and_the_reverse(tmp_path):
    root = make_tree(tmp_path)
    write_tables(root)
    s, t, d = IMAGES[3]
    (root / rel_image(s, t, d, "jpg")).unlink()
    stray = root / rel_image(10000032, 50414267, "ffffffff-ffffffff-ffffffff-ffffffff-ffffffff", "jpg")
    stray.write_bytes(b"x")
    (root / f"files/p11/p{IMAGES[4][0]}/s{IMAGES[4][1]}.txt").unlink()
    images, studies, problems = build_index(root, "jpg")
    check_contract(images, studies, problems)
    assert d not in set(images["dicom_id"]) and len(images) == 4
    rows = {(r.kind, r.dicom_id or r.path) for r in problems.itertuples()}
    assert ("missing_file", d) in rows
    assert ("not_in_table", "ffffffff-ffffffff-ffffffff-ffffffff-ffffffff") in rows
    assert ("missing_report", f"files/p11/p{IMAGES[4][0]}/s{IMAGES[4][1]}.txt") in rows
    assert ("study_without_images", f"files/p10/p{s}/s{t}.txt") in rows
    missing = problems.loc[problems.kind == "missing_file"].iloc[0]
    assert missing.path == rel_image(s, t, d, "jpg") and missing.subject_id == s and missing.study_id == t


def test_jpg_layout_with_metadata_and_split_only(tmp_path):
    """MIMIC-CXR-JPG ships no record list: the image list comes from the metadata table."""
    root = make_tree(tmp_path)
    write_tables(root)
    (root / C.RECORD_LIST).unlink()
    (root / C.STUDY_LIST).unlink()
    images, studies, problems = build_index(root, "auto")
    check_contract(images, studies, problems)
    assert sorted(images["path"]) == sorted(rel_image(s, t, d, "jpg") for s, t, d in IMAGES)
    assert len(studies) == 4 and problems.empty


def test_split_table_gap_takes_the_patients_split(tmp_path):
    root = make_tree(tmp_path)
    write_tables(root)
    table = pd.read_csv(root / C.SPLIT_TABLE)
    write_table(root, C.SPLIT_TABLE, table.iloc[1:].to_dict("records"))  # drop the first image
    images, _, problems = build_index(root, "jpg")
    assert images.set_index("dicom_id").loc[IMAGES[0][2], "split"] == "train"
    assert problems["kind"].tolist() == ["no_split"]


# ----------------------------------------------------------------------------------- broken tables


def test_table_missing_a_column_names_file_and_column(tmp_path):
    root = make_tree(tmp_path)
    write_tables(root)
    cols = [c for c in C.TABLE_COLUMNS[C.METADATA] if c != "ViewPosition"]
    write_table(
        root, C.METADATA, [{"dicom_id": d, "subject_id": s, "study_id": t} for s, t, d in IMAGES], cols
    )
    with pytest.raises(TableError, match=r"mimic-cxr-2\.0\.0-metadata\.csv\.gz.*'ViewPosition'"):
        build_index(root, "auto")
    out = tmp_path / "out"
    assert cli_main(["index", "--root", str(root), "--out-dir", str(out)]) != 0
    assert not (out / "images.parquet").exists()


def test_non_integer_ids_and_bad_splits_are_errors(tmp_path):
    root = make_tree(tmp_path)
    write_tables(root)
    rows = pd.read_csv(root / C.RECORD_LIST).to_dict("records")
    rows[2]["study_id"] = "s53189527"
    write_table(root, C.RECORD_LIST, rows)
    with pytest.raises(TableError, match=r"cxr-record-list\.csv\.gz.*'study_id'.*row 4"):
        build_index(root, "auto")
    write_tables(root)
    rows = pd.read_csv(root / C.SPLIT_TABLE).to_dict("records")
    rows[0]["split"] = "training"
    write_table(root, C.SPLIT_TABLE, rows)
    with pytest.raises(TableError, match=r"split\.csv\.gz.*'split'.*'training'"):
        build_index(root, "auto")


def test_unreadable_table_is_an_error(tmp_path):
    root = make_tree(tmp_path)
    (root / C.RECORD_LIST).write_bytes(b"\x1f\x8b\x08 this is not gzip")
    with pytest.raises(TableError, match=r"cxr-record-list\.csv\.gz"):
        build_index(root, "auto")


def test_missing_root_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        build_index(tmp_path / "nowhere", "auto")


# ---------------------------------------------------------------------------------- without tables


def test_tree_without_tables_is_scanned(tmp_path):
    root = make_tree(tmp_path, exts=("dcm",))
    (root / "files/p10/README.jpg").parent.mkdir(parents=True, exist_ok=True)
    (root / "files/p10/notes.dcm").write_bytes(b"x")  # not inside p<subject>/s<study>
    (root / "files/p12/p12000001").mkdir(parents=True)
    (root / "files/p12/p12000001/s59999999.txt").write_text("report without images\n")
    images, studies, problems = build_index(root, "auto")
    check_contract(images, studies, problems)
    assert (images["format"] == "dcm").all()
    assert sorted(images["dicom_id"]) == sorted(d for _, _, d in IMAGES)
    assert (images["view"] == "").all()
    assert (images["split"] == images["subject_id"].map(hash_split)).all()
    assert len(studies) == 5
    kinds = problems.set_index("kind")["path"].to_dict()
    assert kinds == {
        "unrecognised_path": "files/p10/notes.dcm",
        "study_without_images": "files/p12/p12000001/s59999999.txt",
    }


def test_auto_format_prefers_jpg(tmp_path):
    root = make_tree(tmp_path, exts=("dcm", "jpg"))
    images, _, _ = build_index(root, "auto")
    assert (images["format"] == "jpg").all() and len(images) == len(IMAGES)


def test_hash_split_is_stable_and_about_80_10_10():
    subjects = range(10_000_000, 10_020_000)
    counts = pd.Series([hash_split(s) for s in subjects]).value_counts(normalize=True)
    assert abs(counts["train"] - 0.8) < 0.02 and abs(counts["validate"] - 0.1) < 0.015
    assert abs(counts["test"] - 0.1) < 0.015
    assert hash_split(10000032) == hash_split(10000032) == hash_split("10000032")


# ------------------------------------------------------------------------------- synthetic dataset


def test_synthetic_dataset_through_the_cli(synth_root, tmp_path):
    for fmt in ("jpg", "dcm"):
        out = tmp_path / fmt
        assert cli_main(["index", "--root", str(synth_root), "--out-dir", str(out), "--format", fmt]) == 0
        images = pd.read_parquet(out / "images.parquet")
        studies = pd.read_parquet(out / "studies.parquet")
        problems = pd.read_parquet(out / "problems.parquet")
        check_contract(images, studies, problems)
        record = pd.read_csv(synth_root / C.RECORD_LIST)
        assert len(images) == len(record) and (images["format"] == fmt).all()
        split = pd.read_csv(synth_root / C.SPLIT_TABLE).set_index("dicom_id")["split"]
        assert (images.set_index("dicom_id")["split"] == split.reindex(images["dicom_id"])).all()
        meta = pd.read_csv(synth_root / C.METADATA, keep_default_na=False).set_index("dicom_id")[
            "ViewPosition"
        ]
        assert (images.set_index("dicom_id")["view"] == meta.reindex(images["dicom_id"])).all()
        assert len(studies) == len(pd.read_csv(synth_root / C.STUDY_LIST))
        with open(synth_root / "faults.csv", newline="") as fh:
            missing = {r["path"] for r in csv.DictReader(fh) if r["kind"] == "missing_report"}
        assert set(problems.loc[problems.kind == "missing_report", "path"]) == missing
        assert set(problems["kind"]) == {"missing_report"}


def test_wrong_format_for_the_tables_is_an_error(tmp_path):
    root = make_tree(tmp_path / "root", exts=("dcm",))
    write_tables(root)
    out = tmp_path / "out"
    assert cli_main(["index", "--root", str(root), "--out-dir", str(out), "--format", "jpg"]) != 0
    assert not (out / "images.parquet").exists()
    assert cli_main(["index", "--root", str(root), "--out-dir", str(out), "--format", "auto"]) == 0
    assert len(pd.read_parquet(out / "images.parquet")) == len(IMAGES)


# ------------------------------------------------------------- issue 12: tables that contradict themselves


def test_dcm_on_a_jpg_only_tree_is_an_error_naming_root_and_format(tmp_path, capsys):
    root = make_tree(tmp_path / "root", exts=("jpg",))
    with pytest.raises(InputError, match=rf"{root}: no usable image \(format: dcm\).*5 image file\(s\) of another "
                                         r"format on disk: wrong format\?"):
        build_index(root, "dcm")
    out = tmp_path / "out"
    assert cli_main(["index", "--root", str(root), "--out-dir", str(out), "--format", "dcm"]) == 2
    assert "no usable image (format: dcm)" in capsys.readouterr().err
    assert not out.exists() or not list(out.iterdir())


def test_conflicting_views_are_problem_rows_and_left_unknown(tmp_path):
    root = make_tree(tmp_path)
    write_tables(root)
    meta = pd.read_csv(root / C.METADATA, keep_default_na=False)
    again = meta.iloc[[0, 1]].copy()
    again.loc[again.index[0], "ViewPosition"] = "AP"  # image 0: PA and AP
    write_table(root, C.METADATA, pd.concat([meta, again]).to_dict("records"))  # image 1 repeated identically
    images, _, problems = build_index(root, "jpg")
    view = images.set_index("dicom_id")["view"]
    assert view[IMAGES[0][2]] == "" and view[IMAGES[1][2]] == "LATERAL"
    assert problems[["kind", "dicom_id"]].values.tolist() == [["conflicting_view", IMAGES[0][2]]]
    assert "ViewPosition=PA; ViewPosition=AP" in problems.message[0]


def test_conflicting_split_rows_leave_the_image_out(tmp_path):
    root = make_tree(tmp_path)
    write_tables(root)
    split = pd.read_csv(root / C.SPLIT_TABLE)
    again = split.iloc[[2]].copy()
    again["split"] = "test"  # image 2 of patient 10000032: train and test
    write_table(root, C.SPLIT_TABLE, pd.concat([split, again]).to_dict("records"))
    images, _, problems = build_index(root, "jpg")
    assert IMAGES[2][2] not in set(images["dicom_id"]) and len(images) == len(IMAGES) - 1
    row = problems.set_index("kind").loc["conflicting_split"]
    assert row.dicom_id == IMAGES[2][2] and "split=train; split=test" in row.message
    assert row.path.endswith(C.SPLIT_TABLE)


def test_many_conflicting_ids_are_an_error_naming_the_table(tmp_path):
    ids = [(10000000 + i, 50000000 + i, f"{i:08x}-00000000-00000000-00000000-00000000") for i in range(40)]
    root = tmp_path
    rows = []
    for s, t, d in ids:
        path = root / rel_image(s, t, d, "jpg")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        rows.append({"dicom_id": d, "study_id": t, "subject_id": s, "split": "train"})
    conflicts = [dict(r, split="test") for r in rows[:11]]
    write_table(root, C.SPLIT_TABLE, rows + conflicts)
    with pytest.raises(TableError, match=r"split\.csv\.gz: 11 of 40 dicom_ids are listed with conflicting split"):
        build_index(root, "jpg")


def test_conflicting_duplicate_in_the_record_list(tmp_path):
    root = make_tree(tmp_path)
    write_tables(root)
    record = pd.read_csv(root / C.RECORD_LIST)
    s, t, d = IMAGES[3]
    moved = record.iloc[[3]].copy()
    moved["path"] = rel_image(s, t, d, "dcm").replace(f"s{t}", "s50414267")  # the same id in another study
    other = root / moved["path"].iloc[0].replace(".dcm", ".jpg")
    other.parent.mkdir(parents=True, exist_ok=True)
    other.write_bytes(b"x")
    write_table(root, C.RECORD_LIST, pd.concat([record, moved, record.iloc[[0]]]).to_dict("records"))
    images, _, problems = build_index(root, "jpg")
    assert d not in set(images["dicom_id"]) and len(images) == len(IMAGES) - 1
    assert problems.loc[problems.kind == "duplicate_dicom_id", "dicom_id"].tolist() == [d]


def test_a_patient_in_two_splits_is_an_error_at_index_time(tmp_path, capsys):
    root = make_tree(tmp_path / "root")
    write_tables(root)
    split = pd.read_csv(root / C.SPLIT_TABLE)
    split.loc[1, "split"] = "test"  # patient 10000032: train and test images
    write_table(root, C.SPLIT_TABLE, split.to_dict("records"))
    with pytest.raises(InputError, match=r"split\.csv\.gz: 1 patient\(s\) in more than one split "
                                         r"\(subject_id 10000032 in test, train\)"):
        build_index(root, "jpg")
    assert cli_main(["index", "--root", str(root), "--out-dir", str(tmp_path / "out")]) == 2
    assert "subject_id 10000032 in test, train" in capsys.readouterr().err
