"""Property tests (hypothesis) for the text path: the sentence splitter, the section parser and the
labeller take any text -- arbitrary Unicode, control characters, enormous inputs, random section
headers -- without crashing, keep what they promise, and label a report the same in any batch.

Examples are bounded and derandomized (profile `txtrayalign`, no deadline) so CI runs are quick and
repeatable; HYPOTHESIS_PROFILE=txtrayalign-long explores more.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is in the test extra: pip install -e .[test]")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from txtrayalign.chexpert import label_reports  # noqa: E402
from txtrayalign.constants import OBSERVATIONS  # noqa: E402
from txtrayalign.text.sections import _KNOWN_HEADERS, SECTION_COLUMNS, extract_sections  # noqa: E402
from txtrayalign.text.sentences import split_sentences, unwrap  # noqa: E402

_COMMON = dict(deadline=None, database=None, derandomize=True, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("txtrayalign", max_examples=60, **_COMMON)
settings.register_profile("txtrayalign-long", max_examples=2000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "txtrayalign"))

# Any code point but surrogates, with control characters, line/paragraph separators, NUL and the
# punctuation and markers the splitter reacts to over-represented.
_SPECIAL = list(".!?:;,-*_()#&/'\n\r\t \x00\x0b\x0c\x1c\x85\u2022\u25cf\u2028\u2029\ufeff\u00a0") + [
    "1.", "2)", "Dr.", "e.g.", "No.", "___", "IMPRESSION:", "FINDINGS:", "\n\n", "_____\n", "3.5"]
any_text = st.lists(st.one_of(st.text(max_size=12), st.sampled_from(_SPECIAL)), max_size=60).map("".join)
words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=10)
plain_sentence = st.lists(words, min_size=1, max_size=8).map(lambda ws: " ".join(ws).capitalize() + ".")
plain_body = st.lists(plain_sentence, min_size=1, max_size=4).map(" ".join)


def _is_subsequence(needle: str, haystack: str) -> bool:
    it = iter(haystack)
    return all(ch in it for ch in needle)


def _check_sentences(text: str, sentences: list[str]) -> None:
    assert isinstance(sentences, list)
    for sentence in sentences:
        assert isinstance(sentence, str) and sentence == sentence.strip() and sentence
        assert "\n" not in sentence and "\r" not in sentence
        assert any(ch.isalnum() for ch in sentence.replace("___", ""))
    # The splitter only removes (whitespace, list markers, empty pieces): it never invents text
    # or reorders it.
    assert _is_subsequence("".join("".join(s.split()) for s in sentences), "".join(text.split()))


@given(any_text)
def test_splitter_takes_any_text(text):
    _check_sentences(text, split_sentences(text))
    for line in unwrap(text):
        assert line and "\n" not in line and line == " ".join(line.split())


@given(any_text)
def test_section_parser_takes_any_text(text):
    parsed = extract_sections(text)
    for name, body in parsed.sections.items():
        assert re.fullmatch(r"[a-z0-9_]+", name) and body and body == body.strip()
    for name in SECTION_COLUMNS:
        assert isinstance(parsed.get(name), str)
    assert parsed.label_text in {parsed.get("impression"), parsed.get("findings"), parsed.last_paragraph}
    for section in ("impression", "findings", "both"):
        _check_sentences(parsed.train_text(section), split_sentences(parsed.train_text(section)))


_HEADERS = sorted(h for h, targets in _KNOWN_HEADERS.items() if len(targets) == 1)


@given(st.lists(st.tuples(st.sampled_from(_HEADERS), plain_body,
                          st.sampled_from(["upper", "title", "lower"]), st.sampled_from([" ", "\n", "  "])),
                min_size=1, max_size=6))
def test_random_known_headers_are_found(parts):
    """A report made of known headers (any case, text on the same line or the next) gives each
    section exactly its bodies, in order."""
    lines, expected = [], {}
    for header, body, case, gap in parts:
        shown = {"upper": header.upper(), "title": header.title(), "lower": header.lower()}[case]
        lines.append(f"{shown}:{gap}{body}")
        (name,) = _KNOWN_HEADERS[header]
        expected.setdefault(name, []).append(body)
    parsed = extract_sections("\n\n".join(lines))
    assert parsed.sections == {name: "\n".join(bodies) for name, bodies in expected.items()}
    assert parsed.last_paragraph == parts[-1][1]


@given(st.lists(st.one_of(plain_sentence, st.sampled_from(_SPECIAL)), min_size=1, max_size=20).map(" ".join),
       st.integers(min_value=1_000, max_value=10_000))
@settings(max_examples=6)
def test_enormous_inputs(chunk, repeats):
    """Megabyte reports (a drawn chunk repeated as paragraphs; up to ~1 MB) go through the splitter
    and the parser, and each paragraph splits as it does alone."""
    text = "\n\n".join([chunk] * repeats)
    assert split_sentences(text) == split_sentences(chunk) * repeats
    assert isinstance(extract_sections(text).label_text, str)
    glued = chunk * repeats  # one endless paragraph
    _check_sentences(glued, split_sentences(glued))
    assert isinstance(extract_sections(glued).label_text, str)


@given(st.lists(any_text, min_size=1, max_size=6), st.randoms(use_true_random=False))
def test_labeller_takes_any_text_and_batches_do_not_matter(texts, rng):
    labels = label_reports(texts)
    assert labels.shape == (len(texts), len(OBSERVATIONS)) and labels.dtype == np.float64
    assert np.isin(labels[~np.isnan(labels)], [1.0, 0.0, -1.0]).all()
    for i, text in enumerate(texts):
        if not split_sentences(text.lower()):
            assert np.isnan(labels[i]).all()  # nothing to label is no label, never No Finding
    # Each report's labels do not depend on the others in its batch, nor on their order.
    order = list(range(len(texts)))
    rng.shuffle(order)
    shuffled = label_reports([texts[i] for i in order] + ["No acute disease. Large effusion."])
    np.testing.assert_array_equal(shuffled[: len(texts)], labels[order])
    for i, text in enumerate(texts):
        np.testing.assert_array_equal(label_reports([text])[0], labels[i])


@given(st.lists(plain_body, min_size=3, max_size=10).map(" ".join), st.integers(50, 300))
@settings(max_examples=3)
def test_labeller_takes_a_long_report(chunk, repeats):
    """A long report of ordinary sentences (tens of KB) is labelled like itself in a batch."""
    text = " ".join([chunk] * repeats)
    alone = label_reports([text])
    np.testing.assert_array_equal(label_reports(["Small effusion.", text])[1], alone[0])
