"""Report-level retrieval (CXR-RePaiR): the bank of whole sections and top-1 report per query image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from txtrayalign.evaluate import EvaluationInputError
from txtrayalign.evaluate import report_retrieval as rr

MIMIC_EXAMPLE = Path(__file__).resolve().parents[1] / ".." / "shared" / "testdata" / "reports" / "mimic_example_report.txt"


def sections_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "subject_id": [10000001, 10000002, 10000003, 10000004, 10000005, 10000006],
            "study_id": [50000005, 50000001, 50000003, 50000002, 50000004, 50000006],
            "findings": ["f5", "f1", None, "f2", "f4", "f6"],
            "impression": ["No acute process.", "Small left effusion.", "  ", None, "No acute process.", "Edema."],
        }
    )


def test_bank_keeps_studies_with_text_in_the_bank_splits() -> None:
    train = [50000001, 50000002, 50000003, 50000004, 50000005]
    bank = rr.report_bank(sections_table(), study_ids=train, dedupe=False)
    assert bank["study_id"].tolist() == [50000001, 50000004, 50000005]  # sorted; 3 empty, 2 missing, 6 not train
    assert bank["text"].tolist() == ["Small left effusion.", "No acute process.", "No acute process."]
    assert bank["text_count"].tolist() == [1, 2, 2]
    deduped = rr.report_bank(sections_table(), study_ids=train)
    assert deduped["study_id"].tolist() == [50000001, 50000004] and deduped["text_count"].tolist() == [1, 2]
    findings = rr.report_bank(sections_table(), section="findings", study_ids=train)
    assert findings["text"].tolist() == ["f1", "f2", "f4", "f5"]


def test_bank_errors_name_the_file_and_the_section() -> None:
    with pytest.raises(EvaluationInputError, match=r"text/sections.parquet: no section column 'impresion'; found"):
        rr.report_bank(sections_table(), section="impresion")
    with pytest.raises(EvaluationInputError, match="empty report bank"):
        rr.report_bank(sections_table(), study_ids=[50000003])


def test_top1_report_per_query_on_a_hand_made_case() -> None:
    bank = rr.report_bank(sections_table(), dedupe=False)  # 1, 4, 5, 6
    assert bank["study_id"].tolist() == [50000001, 50000004, 50000005, 50000006]
    bank_emb = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    queries = np.array([[0.9, 0.1], [0.1, 0.9], [-1.0, 0.2]])
    scores, index = rr.retrieve_reports(queries, bank_emb, k=1)
    assert index[:, 0].tolist() == [0, 1, 3]  # the tie between 4 and 5 goes to the lower index
    np.testing.assert_allclose(scores[:, 0], [0.9, 0.9, 1.0])
    assert rr.retrieved_texts(bank, index) == ["Small left effusion.", "No acute process.", "Edema."]
    _, top2 = rr.retrieve_reports(queries, bank_emb, k=2)
    assert rr.retrieved_texts(bank, top2, k=2, sep=" | ")[1] == "No acute process. | No acute process."


def test_the_query_study_itself_is_never_retrieved() -> None:
    bank = rr.report_bank(sections_table(), dedupe=False)
    bank_emb = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    queries = np.array([[0.1, 0.9], [1.0, 0.0]])
    # the first query is study 50000004 itself (bank row 1): row 2 (same text, other study) comes first instead
    scores, index = rr.retrieve_reports(
        queries, bank_emb, k=2, query_study_ids=[50000004, 50000099], bank_study_ids=bank["study_id"]
    )
    assert index.tolist() == [[2, 0], [0, 1]]
    np.testing.assert_allclose(scores, [[0.9, 0.1], [1.0, 0.0]])
    with pytest.raises(EvaluationInputError, match="k=5 must be between 1 and the bank size"):
        rr.retrieve_reports(queries, bank_emb, k=5)


def test_joined_sentences_and_references() -> None:
    sentences = ["No effusion.", "Heart normal.", "Lungs clear."]
    index = np.array([[2, 0, 1], [1, 1, 0]])
    assert rr.joined_sentences(sentences, index, k=2) == ["Lungs clear. No effusion.", "Heart normal. Heart normal."]
    with pytest.raises(EvaluationInputError, match="k=4 but only 3"):
        rr.joined_sentences(sentences, index, k=4)
    texts, has = rr.reference_texts(sections_table(), [50000006, 50000002, 50000003, 59999999])
    assert texts == ["Edema.", "", "", ""] and has.tolist() == [True, False, False, False]


def test_bank_from_the_real_mimic_example_report() -> None:
    if not MIMIC_EXAMPLE.is_file():
        pytest.skip(f"real MIMIC example report absent: {MIMIC_EXAMPLE}")
    from txtrayalign.text.sections import extract_sections

    parsed = extract_sections(MIMIC_EXAMPLE.read_text())
    sections = pd.DataFrame([{"subject_id": 10000032, "study_id": 50414267, **parsed.sections}])
    bank = rr.report_bank(sections)
    assert bank["text"].tolist() == ["Large left pleural effusion"]
    texts, has = rr.reference_texts(sections, [50414267], section="findings")
    assert has.tolist() == [True] and texts[0].startswith("Cardiac size cannot be evaluated.")
