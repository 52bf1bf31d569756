"""Section extraction on the MIMIC example report and on tricky hand-written reports."""

from __future__ import annotations

import pandas as pd
import pytest

from txtrayalign.text.build import build_tables, read_report
from txtrayalign.text.sections import extract_sections
from txtrayalign.text.sentences import split_sentences


def test_mimic_example_report(shared_testdata):
    text = (shared_testdata / "reports" / "mimic_example_report.txt").read_text()
    r = extract_sections(text)
    assert r.get("examination") == "CHEST (PA AND LAT)"
    assert r.get("indication") == "___ year old woman with ?pleural effusion // ?pleural effusion"
    assert r.get("technique") == "Chest PA and lateral"
    assert r.get("comparison") == "___"
    assert r.get("findings").startswith("Cardiac size cannot be evaluated. Large left pleural effusion is new. Small right")
    assert r.get("findings").endswith("mild degenerative changes in the thoracic spine")
    assert r.get("impression") == "Large left pleural effusion"
    assert r.label_text == "Large left pleural effusion"
    assert r.last_paragraph == "Large left pleural effusion"
    assert "FINAL REPORT" not in " ".join(r.sections.values())


ADDENDUM_REPORT = """                                 FINAL REPORT
 ADDENDUM:  The findings were discussed with Dr. ___ by telephone at 3:15 p.m.
 ______________________________________________________________________________
 EXAMINATION:  CHEST (PORTABLE AP)

 INDICATION:  ___ with hypoxia

 FINDINGS AND IMPRESSION:  Moderate cardiomegaly.  No pneumothorax.
"""


def test_addendum_before_report_and_findings_and_impression():
    r = extract_sections(ADDENDUM_REPORT)
    assert r.get("addendum") == "The findings were discussed with Dr. ___ by telephone at 3:15 p.m."
    assert r.get("examination") == "CHEST (PORTABLE AP)"
    assert r.get("indication") == "___ with hypoxia"
    assert r.get("findings") == r.get("impression") == "Moderate cardiomegaly. No pneumothorax."
    assert r.label_text == "Moderate cardiomegaly. No pneumothorax."
    # "both" must not repeat the shared text.
    assert r.train_text("both") == "Moderate cardiomegaly. No pneumothorax."


def test_wet_read_above_the_bar_keeps_its_name():
    text = (" WET READ: ___ ___ 8:32 PM\n  No pneumothorax.\n " + "_" * 78 + "\n" + " " * 33 + "FINAL REPORT\n"
            " INDICATION:  eval\n \n IMPRESSION:  No pneumothorax.  Small effusion.\n")
    r = extract_sections(text)
    assert r.sections["wet_read"] == "___ ___ 8:32 PM No pneumothorax."
    assert "addendum" not in r.sections
    assert r.label_text == "No pneumothorax. Small effusion."


def test_no_headers_uses_last_paragraph():
    r = extract_sections("PA and lateral views of the chest.\n\nThe lungs are clear.\nNo pneumothorax.\n")
    assert r.sections == {}
    assert r.last_paragraph == "The lungs are clear. No pneumothorax."
    assert r.label_text == r.last_paragraph
    assert r.train_text("impression") == ""


def test_lower_case_headers_and_conclusion():
    r = extract_sections("Findings: Heart size is normal.\nImpression: No acute process.")
    assert r.get("findings") == "Heart size is normal."
    assert r.get("impression") == "No acute process."
    r = extract_sections(" FINDINGS:  Small effusion.\n \n CONCLUSION:  Small left effusion.\n")
    assert r.get("impression") == "Small left effusion."
    assert r.label_text == "Small left effusion."


def test_header_with_space_before_colon_and_unknown_headers():
    r = extract_sections(" IMPRESSION :  Mild edema.\n \n RECOMMENDATION(S):  Follow-up.\n")
    assert r.get("impression") == "Mild edema."
    assert r.sections["recommendation_s"] == "Follow-up."
    # An upper-case word with a colon inside a paragraph is not a header.
    r = extract_sections(" FINDINGS:  Lines as follows:\n PICC: tip in the SVC.\n")
    assert r.get("findings") == "Lines as follows: PICC: tip in the SVC."


def test_findings_only_and_train_sections():
    r = extract_sections(" FINDINGS:  1. Left\n effusion.\n 2. Atelectasis.\n")
    assert r.get("findings") == "1. Left effusion.\n2. Atelectasis."
    assert r.label_text == r.get("findings")
    assert r.train_text("impression") == ""
    assert r.train_parts("both") == [("findings", "1. Left effusion.\n2. Atelectasis.")]
    with pytest.raises(ValueError, match="train section"):
        r.train_text("history")


def test_read_report_problems(tmp_path):
    (tmp_path / "ok.txt").write_text(" IMPRESSION: ok\n")
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "latin1.txt").write_bytes(" IMPRESSION: caf\xe9 effusion\n".encode("latin-1"))
    assert read_report(tmp_path / "ok.txt") == (" IMPRESSION: ok\n", None)
    assert read_report(tmp_path / "empty.txt")[1][0] == "empty"
    assert read_report(tmp_path / "missing.txt")[1][0] == "missing"
    text, problem = read_report(tmp_path / "latin1.txt")
    assert text == "" and problem[0] == "not_utf8" and "at byte 16" in problem[1]


def _write_studies(root, reports: dict[int, bytes | None]) -> pd.DataFrame:
    rows = []
    for i, (study_id, content) in enumerate(reports.items()):
        rel = f"files/p10/p1000000{i}/s{study_id}.txt"
        if content is not None:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(content)
        rows.append({"subject_id": 10000000 + i, "study_id": study_id, "report_path": rel,
                     "split": "train", "group": "p10"})
    return pd.DataFrame(rows)


def test_build_tables_and_cli(tmp_path):
    reports = {
        50000001: b" FINDINGS:  Small left effusion. Heart size is normal.\n \n IMPRESSION:  Small left effusion.\n",
        50000002: b"",
        50000003: " IMPRESSION:  Caf\xe9 opacity.\n".encode("latin-1"),
        50000004: None,
    }
    studies = _write_studies(tmp_path, reports)
    sections, sentences, problems = build_tables(studies, tmp_path, "both")
    assert list(sections.columns[:3]) == ["subject_id", "study_id", "split"]
    # The Latin-1 report is a problem row and is not used: no label text, no sentences.
    assert sections["label_text"].tolist() == ["Small left effusion.", "", "", ""]
    assert sections.loc[0, "train_text"] == "Small left effusion. Heart size is normal.\nSmall left effusion."
    first = sentences[sentences.study_id == 50000001]
    assert first["section"].tolist() == ["findings", "findings", "impression"]
    assert first["position"].tolist() == [0, 1, 0]
    assert sentences["sentence_id"].is_unique and sentences["sentence_id"].dtype == "int64"
    assert dict(zip(problems.study_id, problems.kind, strict=True)) == {50000002: "empty", 50000003: "not_utf8",
                                                           50000004: "missing"}
    # The CLI writes the three tables, and sentence ids are stable between runs.
    from txtrayalign.cli import main

    studies.to_parquet(tmp_path / "studies.parquet")
    outs = []
    for run in range(2):
        out = tmp_path / f"out{run}"
        assert main(["sections", "--studies", str(tmp_path / "studies.parquet"), "--root", str(tmp_path),
                     "--train-section", "impression", "--out-sections", str(out / "sections.parquet"),
                     "--out-sentences", str(out / "sentences.parquet"),
                     "--out-problems", str(out / "problems.parquet"), "--log", str(out / "log.txt")]) == 0
        outs.append(pd.read_parquet(out / "sentences.parquet"))
    assert outs[0].equals(outs[1])
    assert outs[0]["sentence"].tolist() == ["Small left effusion."]
    assert len(pd.read_parquet(tmp_path / "out0" / "problems.parquet")) == 3


def test_duplicate_study_ids_are_refused(tmp_path):
    from txtrayalign.errors import InputError
    from txtrayalign.text.build import load_studies

    studies = _write_studies(tmp_path, {50000001: b"x", 50000002: b"y"})
    studies.loc[1, "study_id"] = 50000001
    studies.to_parquet(tmp_path / "s.parquet")
    with pytest.raises(InputError, match=r"s\.parquet: study_id must be unique"):
        load_studies(str(tmp_path / "s.parquet"))


def _sections_then_labels(tmp_path, root):
    """Run the `sections` stage (train text: both) on tmp_path/studies.parquet, then `label`."""
    from txtrayalign.cli import main

    text, labels = tmp_path / "text", tmp_path / "labels"
    assert main(["sections", "--studies", str(tmp_path / "studies.parquet"), "--root", str(root),
                 "--train-section", "both", "--out-sections", str(text / "sections.parquet"),
                 "--out-sentences", str(text / "sentences.parquet"),
                 "--out-problems", str(text / "problems.parquet")]) == 0
    assert main(["label", "--sections", str(text / "sections.parquet"), "--sentences",
                 str(text / "sentences.parquet"), "--out-reports", str(labels / "reports.parquet"),
                 "--out-sentences", str(labels / "sentences.parquet")]) == 0
    return text, labels


def test_sections_and_labels_on_the_synthetic_dataset(synth_root, tmp_path):
    """The text and label stages on the synthetic MIMIC layout, with its injected report faults."""
    import csv

    from txtrayalign.constants import OBSERVATIONS

    studies = pd.read_csv(synth_root / "cxr-study-list.csv.gz").rename(columns={"path": "report_path"})
    split = pd.read_csv(synth_root / "mimic-cxr-2.0.0-split.csv.gz")[["study_id", "split"]].drop_duplicates()
    studies = studies.merge(split, on="study_id", how="left").fillna({"split": "train"})
    studies["group"] = "p" + studies["subject_id"].astype(str).str[:2]
    studies.to_parquet(tmp_path / "studies.parquet")
    text, labels = _sections_then_labels(tmp_path, synth_root)
    problems = pd.read_parquet(text / "problems.parquet")
    with (synth_root / "faults.csv").open() as f:
        injected = {int(r["study_id"]): r["kind"] for r in csv.DictReader(f) if r["kind"].endswith("_report")}
    kinds = {"empty_report": "empty", "non_utf8_report": "not_utf8", "missing_report": "missing"}
    found = dict(zip(problems.study_id, problems.kind, strict=True))
    assert {s: k for s, k in found.items() if k != "no_train_text"} == {s: kinds[k] for s, k in injected.items()}
    # a readable report without findings or impression (the synthetic layout "neither") has no training text
    sections_table = pd.read_parquet(text / "sections.parquet")
    without_text = set(sections_table.study_id[sections_table.train_text == ""]) - set(injected)
    assert {s for s, k in found.items() if k == "no_train_text"} == without_text and without_text
    assert set(problems.message[problems.kind == "no_train_text"]) == {"no findings or impression section"}

    reports = pd.read_parquet(labels / "reports.parquet").set_index("study_id")
    assert len(reports) == len(studies)
    sections = pd.read_parquet(text / "sections.parquet").set_index("study_id")
    blank = sections["label_text"].str.strip() == ""
    assert reports.loc[blank[blank].index, OBSERVATIONS].isna().all().all()
    # The generator's own label table states what each report says: we should read the same.
    truth = pd.read_csv(synth_root / "mimic-cxr-2.0.0-chexpert.csv.gz").set_index("study_id")
    with_text = blank[~blank].index
    ours = reports.loc[with_text, OBSERVATIONS].fillna(9).to_numpy()
    theirs = truth.loc[with_text, OBSERVATIONS].fillna(9).to_numpy()
    assert (ours == theirs).mean() > 0.95


# ------------------------------------------------------------------ encodings (issue 12, row 5)
@pytest.mark.parametrize(
    "encode, kind",
    [
        (lambda t: t.encode("utf-8"), None),
        (lambda t: t.encode("utf-8-sig"), None),
        (lambda t: t.encode("utf-16"), None),  # with a byte-order mark (native order)
        (lambda t: b"\xfe\xff" + t.encode("utf-16-be"), None),
        (lambda t: t.encode("utf-16-le"), "nul_bytes"),  # no byte-order mark
        (lambda t: t.encode("utf-16-be"), "nul_bytes"),
        (lambda t: t.encode("utf-32"), "nul_bytes"),  # its LE mark reads as UTF-16 LE + NULs
        (lambda t: b"\xff\xfe" + t.encode("utf-16-le")[:-1], "bad_encoding"),  # truncated
        (lambda t: t.replace("Heart", "H\u00e9art").encode("cp1252"), "not_utf8"),
        (lambda t: t.encode("utf-8").replace(b"Heart", b"He\x00art"), "nul_bytes"),
    ],
)
def test_decoding_policy(encode, kind):
    from txtrayalign.text.encoding import decode_report

    text = "IMPRESSION: Heart size is normal. \u2013 Small left effusion.\n"
    decoded, problem = decode_report(encode(text))
    if kind is None:
        assert (decoded, problem) == (text, None)
    else:
        assert decoded == "" and problem[0] == kind and problem[1]


def test_read_text_names_the_file(tmp_path):
    from txtrayalign.errors import InputError
    from txtrayalign.text.encoding import read_text

    (tmp_path / "r.csv").write_bytes("no acute disease\n".encode("utf-16-le"))
    with pytest.raises(InputError, match=r"r\.csv: 17 NUL character\(s\).*UTF-16 without a byte-order mark"):
        read_text(tmp_path / "r.csv")
    (tmp_path / "ok.csv").write_bytes("no acute disease\n".encode("utf-16"))
    assert read_text(tmp_path / "ok.csv") == "no acute disease\n"


def test_utf16_reports_are_decoded_or_refused_never_no_finding(shared_testdata, tmp_path):
    """Issue 12: a report saved as UTF-16 ended as No Finding = 1. With a BOM it is now read like its
    UTF-8 original (same labels); without one it is a problem row and has no labels at all."""
    from txtrayalign.constants import OBSERVATIONS

    report = (shared_testdata / "reports" / "mimic_example_report.txt").read_text(encoding="utf-8")
    studies = _write_studies(tmp_path, {
        50000001: report.encode("utf-8"),
        50000002: report.encode("utf-16"),
        50000003: report.encode("utf-16-le"),
        50000004: report.encode("utf-8-sig"),
    })
    studies.to_parquet(tmp_path / "studies.parquet")
    text, labels = _sections_then_labels(tmp_path, tmp_path)
    problems = pd.read_parquet(text / "problems.parquet")
    assert problems[["study_id", "kind"]].values.tolist() == [[50000003, "nul_bytes"]]
    sections = pd.read_parquet(text / "sections.parquet").set_index("study_id").drop(columns="subject_id")
    assert sections.loc[50000001, "label_text"].strip()
    for same in (50000002, 50000004):
        assert sections.loc[same].equals(sections.loc[50000001])
    assert (sections.loc[50000003, ["label_text", "train_text", "findings", "impression"]] == "").all()
    sentences = pd.read_parquet(text / "sentences.parquet")
    counts = sentences["study_id"].value_counts()
    assert counts[50000001] == counts[50000002] == counts[50000004] > 0 and 50000003 not in counts

    reports = pd.read_parquet(labels / "reports.parquet").set_index("study_id")[OBSERVATIONS]
    assert reports.loc[50000001].notna().any()
    for same in (50000002, 50000004):
        assert reports.loc[same].equals(reports.loc[50000001])
    assert reports.loc[50000003].isna().all()  # not No Finding = 1


def test_sections_cli_bad_input_is_one_line(tmp_path, capsys):
    """Issue 12 (command lines): a missing or broken studies table ends in one line, exit 2."""
    from txtrayalign.cli import main

    common = ["--out-sections", str(tmp_path / "o" / "s.parquet"), "--out-sentences",
              str(tmp_path / "o" / "t.parquet"), "--out-problems", str(tmp_path / "o" / "p.parquet")]
    (tmp_path / "bad.parquet").write_text("not parquet")
    cases = [
        (["--studies", str(tmp_path / "none.parquet"), "--root", str(tmp_path)],
         f"{tmp_path / 'none.parquet'}: No such file or directory"),
        (["--studies", str(tmp_path / "bad.parquet"), "--root", str(tmp_path)],
         f"{tmp_path / 'bad.parquet'}: not a readable parquet file"),
        (["--studies", str(tmp_path / "bad.parquet"), "--root", str(tmp_path / "nowhere")],
         f"--root {tmp_path / 'nowhere'}: not a folder"),
    ]
    for args, message in cases:
        assert main(["sections", *args, *common]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"txtrayalign sections: error: {message}"), err
    assert not (tmp_path / "o").exists()


def test_a_five_megabyte_report_through_the_stage(shared_testdata, tmp_path, caplog):
    """Issue 12: the `sections` stage on a 5 MB report finishes; its training text keeps the first
    SENTENCE_ID_BASE sentences (logged), in order, and the other reports are untouched."""
    from txtrayalign.text.build import SENTENCE_ID_BASE

    report = (shared_testdata / "reports" / "mimic_example_report.txt").read_text(encoding="utf-8")
    impression = extract_sections(report).get("impression")
    sentence = impression.rstrip(".") + "."
    huge = "IMPRESSION: " + " ".join([sentence] * (5_000_000 // len(sentence)))
    studies = _write_studies(tmp_path, {50000001: huge.encode(), 50000002: report.encode()})
    sections, sentences, problems = build_tables(studies, tmp_path, "impression")
    assert problems.empty
    first = sentences[sentences.study_id == 50000001]
    assert first["sentence"].tolist() == [sentence] * SENTENCE_ID_BASE
    assert f"more than {SENTENCE_ID_BASE} sentences; the rest are dropped" in caplog.text
    assert sentences[sentences.study_id == 50000002]["sentence"].tolist() == split_sentences(impression)


# --------------------------------------------------------------------------- any report text trains


def test_auto_and_report_on_the_mimic_example(shared_testdata):
    """The MIMIC example has an impression: `auto` picks it, as a reader would; `report` is the whole
    text without the header labels (and without the FINAL REPORT title)."""
    r = extract_sections((shared_testdata / "reports" / "mimic_example_report.txt").read_text())
    assert r.train_text("auto") == r.train_text("impression") == "Large left pleural effusion"
    whole = r.train_text("report")
    assert whole.splitlines()[0] == "CHEST (PA AND LAT)" and whole.endswith("Large left pleural effusion")
    assert "FINAL REPORT" not in whole and "IMPRESSION" not in whole and "FINDINGS" not in whole
    assert "Cardiac size cannot be evaluated." in whole and "___ year old woman" in whole


def test_headerless_reports_train_on_their_whole_text(shared_testdata):
    """CheXpert's own sample reports have no headers: each is one section, so `auto` trains on all of
    it, the two numbered paragraphs of the second included; `impression` has nothing."""
    reports = pd.read_csv(shared_testdata / "reports" / "chexpert_sample_reports.csv", header=None)[0].tolist()
    assert len(reports) == 4
    for text in reports:
        r = extract_sections(text)
        assert not r.sectioned and r.sections == {} and r.train_text("impression") == ""
        assert r.train_text("auto") == r.train_text("report") == "\n".join(split_paragraphs(text))
    second = extract_sections(reports[1]).train_text("auto")
    assert second.startswith("1. Left pleural effusion") and second.endswith("2. Cardiomegaly without overt edema.")
    assert split_sentences(second) == ["Left pleural effusion with adjacent atelectasis.",
                                       "Right effusion is also present.", "Cardiomegaly without overt edema."]


def split_paragraphs(text: str) -> list[str]:
    """Hand rule for the test: blank-line separated blocks, whitespace collapsed."""
    blocks = [" ".join(b.split()) for b in text.replace("\r\n", "\n").split("\n\n")]
    return [b for b in blocks if b]


def test_auto_on_real_iu_reports_is_impression_else_findings(shared_testdata):
    """2,069 real IU X-ray reports as the Open-i index writes them: `auto` is the impression, else the
    findings (every one has findings); `impression` leaves exactly those without one empty."""
    from txtrayalign.datasets.iu import report_text
    from txtrayalign.openi import read_openi_report

    files = sorted((shared_testdata / "reports" / "iu_dev" / "xml").glob("*.xml"))
    assert len(files) == 2069
    without_impression = 0
    for path in files:
        sections = read_openi_report(path).sections
        r = extract_sections(report_text(sections))
        expected = sections.get("impression") or sections["findings"]
        assert r.train_text("auto") == expected, path.name
        without_impression += not sections.get("impression")
        assert (r.train_text("impression") == "") == (not sections.get("impression")), path.name
    assert 0 < without_impression < len(files)


@pytest.mark.parametrize("text, impression, findings", [
    ("FINDINGS AND IMPRESSION:\n1. No acute process.\n2. Stable cardiomegaly.",
     "1. No acute process.\n2. Stable cardiomegaly.", "1. No acute process.\n2. Stable cardiomegaly."),
    ("Findings: Lungs clear.\n\nConclusion: No pneumothorax.", "No pneumothorax.", "Lungs clear."),
    ("Clinical history: cough.\nOpinion: Normal chest radiograph.", "Normal chest radiograph.", ""),
    ("Impressions: 1. Right lower lobe pneumonia. 2. Small effusion.",
     "1. Right lower lobe pneumonia. 2. Small effusion.", ""),
    ("CHEST PA AND LATERAL\n\nFINDINGS\nHeart normal.\n\nIMPRESSION\nNo acute disease.", "No acute disease.",
     "Heart normal."),
    # a sentence that merely starts with a section word is not a header
    ("Impression is limited by rotation. Lungs clear.", "", ""),
    ("Findings suggest pneumonia.\n\nFollow up advised.", "", ""),
])
def test_other_headers_where_unambiguous(text, impression, findings):
    r = extract_sections(text)
    assert (r.get("impression"), r.get("findings")) == (impression, findings)
    if not impression and not findings and not r.sectioned:
        assert r.train_text("auto") == "\n".join(split_paragraphs(text))


def test_unsectioned_multi_paragraph_note_is_one_section_but_labels_keep_the_last_paragraph():
    note = "Patient with cough for two weeks.\n\nHeart size normal. Lungs clear."
    r = extract_sections(note)
    assert r.train_text("auto") == "Patient with cough for two weeks.\nHeart size normal. Lungs clear."
    assert r.label_text == "Heart size normal. Lungs clear."  # MIMIC's official rule, unchanged
    sectioned = extract_sections("INDICATION: cough.\n\nHeart size normal.\n\nLungs clear.")
    assert sectioned.train_text("auto") == "Lungs clear."  # the last paragraph of a report with headers


def test_no_train_text_rows_and_the_empty_share_check(tmp_path, capsys):
    """Plain notes under `impression`: every study is a no_train_text row, and the stage stops with one
    line naming the setting, the counts and `auto`; under `auto` they all train."""
    from txtrayalign.cli import main

    notes = {50000000 + i: f"Note {i}: lungs clear, no effusion.".encode() for i in range(20)}
    notes[50000020] = b"IMPRESSION: No acute disease."
    studies = _write_studies(tmp_path, notes)
    _, _, problems = build_tables(studies, tmp_path, "impression")
    assert problems.kind.tolist() == ["no_train_text"] * 20
    assert set(problems.message) == {"no impression section"}
    studies.to_parquet(tmp_path / "studies.parquet")
    out = tmp_path / "out"
    common = ["--studies", str(tmp_path / "studies.parquet"), "--root", str(tmp_path),
              "--out-sections", str(out / "s.parquet"), "--out-sentences", str(out / "t.parquet"),
              "--out-problems", str(out / "p.parquet")]
    assert main(["sections", *common, "--train-section", "impression"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["txtrayalign sections: error: text.train_section = impression (--train-section) leaves 20 of "
                   "21 studies (95.2%, e.g. files/p10/p10000000/s50000000.txt) without training text (no impression section), more "
                   "than text.max_empty_share = 0.05; text.train_section: auto gives 21 of 21 studies a "
                   "training text"]
    assert not out.exists()
    assert main(["sections", *common, "--train-section", "auto"]) == 0
    sections = pd.read_parquet(out / "s.parquet")
    assert (sections.train_text != "").all() and pd.read_parquet(out / "p.parquet").empty
    assert sections.set_index("study_id").train_text[50000020] == "No acute disease."
    # one study in 21 without an impression is below a share of 0.05 ... and 0.04 is not
    few = {**{k: b"IMPRESSION: clear." for k in notes}, 50000000: b"Lungs clear."}
    _write_studies(tmp_path, few).to_parquet(tmp_path / "studies.parquet")
    assert main(["sections", *common, "--train-section", "impression"]) == 0
    assert pd.read_parquet(out / "p.parquet").kind.tolist() == ["no_train_text"]
    assert main(["sections", *common, "--train-section", "impression", "--max-empty-share", "0.04"]) == 2
