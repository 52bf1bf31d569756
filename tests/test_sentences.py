"""Sentence splitting on radiology text: lists, decimals, abbreviations, PHI, wrapped lines."""

from __future__ import annotations

import pytest

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
