"""Sentence splitting on radiology text: lists, decimals, abbreviations, PHI, wrapped lines."""

from __future__ import annotations

import contextlib
import signal

import pytest

from txtrayalign.text.sections import extract_sections
from txtrayalign.text.sentences import split_sentences, unwrap


def test_numbered_list_on_separate_lines():
    text = "1. Left pleural effusion with adjacent atelectasis. Right effusion is also present.\n\n" \
           "2. Cardiomegaly without overt edema."
    assert split_sentences(text) == [
        "Left pleural effusion with adjacent atelectasis.",
        "Right effusion is also present.",
        "Cardiomegaly without overt edema.",
    ]


def test_inline_numbered_list():
    assert split_sentences("1. Stable mild cardiomegaly. 2. Hyperexpanded but clear lungs.") == [
        "Stable mild cardiomegaly.",
        "Hyperexpanded but clear lungs.",
    ]


def test_numbered_items_wrapped_over_lines():
    text = "1. Moderate right pleural effusion,\nslightly larger.\n2. No pneumothorax."
    assert split_sentences(text) == ["Moderate right pleural effusion, slightly larger.", "No pneumothorax."]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("There is a 3.5 cm mass. No effusion.", ["There is a 3.5 cm mass.", "No effusion."]),
        ("Nodule measures 1.2 x 2.3 cm in the RUL. Stable.", ["Nodule measures 1.2 x 2.3 cm in the RUL.", "Stable."]),
        ("Findings e.g. opacity, i.e. pneumonia vs. atelectasis. Next.",
         ["Findings e.g. opacity, i.e. pneumonia vs. atelectasis.", "Next."]),
        ("Dr. ___ was paged at 3:30 p.m. on ___. Done.", ["Dr. ___ was paged at 3:30 p.m. on ___.", "Done."]),
        ("Approx. 2 cm nodule. Compare with study No. 2 today.",
         ["Approx. 2 cm nodule.", "Compare with study No. 2 today."]),
        ("No pneumothorax! Is there effusion? Unclear.", ["No pneumothorax!", "Is there effusion?", "Unclear."]),
    ],
)
def test_decimals_abbreviations_and_phi(text, expected):
    assert split_sentences(text) == expected


def test_hard_wrapped_lines_are_joined():
    text = "Cardiac size cannot be evaluated.  Large left pleural effusion is new.  Small\n" \
           " right effusion is new.  The upper lungs are clear."
    assert split_sentences(text) == [
        "Cardiac size cannot be evaluated.",
        "Large left pleural effusion is new.",
        "Small right effusion is new.",
        "The upper lungs are clear.",
    ]


def test_bullets():
    text = "- NG tube in the stomach\n- ET tube terminates 3 cm above the carina\n* no pneumothorax"
    assert split_sentences(text) == [
        "NG tube in the stomach",
        "ET tube terminates 3 cm above the carina",
        "no pneumothorax",
    ]


def test_empty_and_placeholder_only():
    assert split_sentences("") == []
    assert split_sentences("   \n ") == []
    assert split_sentences("___") == []
    assert split_sentences("___.  No effusion.") == ["No effusion."]


def test_unwrap_keeps_paragraphs_and_items():
    assert unwrap("a b\nc\n\nd\n1. e\n2. f\ng") == ["a b c", "d", "1. e", "2. f g"]


@contextlib.contextmanager
def _fail_if_hung(seconds: int):
    """Turn a hang into a failure (SIGALRM). Not a speed assertion: the bound is ~100x the work."""
    def hung(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: not linear in the input")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.skipif(not hasattr(signal, "SIGALRM"), reason="needs SIGALRM")
def test_five_megabyte_reports_do_not_hang(shared_testdata):
    """Issue 12: a 5 MB report never finished (each full stop rescanned the text from its start;
    a long blank line backtracked quadratically in the title pattern). Now each is one pass."""
    report = (shared_testdata / "reports" / "mimic_example_report.txt").read_text(encoding="utf-8")
    one = extract_sections(report)
    body = one.get("findings") + ". Dr. Smith e.g. paged at 3:30 p.m. about No. 2 today."
    expected = split_sentences(body)
    repeats = 5_000_000 // len(body)
    with _fail_if_hung(120):
        assert split_sentences(" ".join([body] * repeats)) == expected * repeats
        endless = "opacity " * 700_000  # 5.6 MB, no punctuation: one sentence
        assert split_sentences(endless) == [endless.strip()]
        assert split_sentences("." * 5_000_000 + " a") == ["a"]
        big = extract_sections("\n\n".join([report] * (5_000_000 // len(report))))
        assert big.get("impression") == "\n".join([one.get("impression")] * (5_000_000 // len(report)))
        blank = extract_sections(" " * 5_000_000 + "\nIMPRESSION: " + " " * 5_000_000 + "No effusion.")
        assert blank.sections == {"impression": "No effusion."}
