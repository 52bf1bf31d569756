"""Text similarity: BLEU and ROUGE-L equal the libraries' own values; intervals equal resampled library values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu
from rouge_score import rouge_scorer

from txtrayalign.evaluate import textmetrics as ts

WEIGHTS = [(1.0,), (0.5, 0.5), (1 / 3,) * 3, (0.25,) * 4]
HYPS = [
    "Small left pleural effusion.",
    "No acute cardiopulmonary process.",
    "Moderate cardiomegaly, no edema.",
    "Lungs clear.",  # short: brevity penalty
    "Right lower lobe opacity, possibly pneumonia.",
    "Stable support devices.",
]
REFS = [
    "Small left pleural effusion, new since the prior study.",
    "No acute cardiopulmonary process.",
    "Cardiomegaly is moderate. There is no pulmonary edema.",
    "The lungs are clear without focal consolidation.",
    "Right lower lobe opacity may reflect pneumonia or atelectasis.",
    "Endotracheal tube and nasogastric tube in standard position.",
]


def nltk_bleu(hyps: list[str], refs: list[str]) -> list[float]:
    return corpus_bleu(
        [[ts.tokenize(r)] for r in refs], [ts.tokenize(h) for h in hyps], weights=WEIGHTS,
        smoothing_function=SmoothingFunction().method1,
    )


def test_tokens() -> None:
    assert ts.tokenize("Small left pleural effusion, new.") == ["small", "left", "pleural", "effusion", "new"]
    assert ts.tokenize("  ") == []


def test_bleu_equals_nltk_corpus_bleu() -> None:
    got = ts.text_metrics(HYPS, REFS, n_boot=0)
    expected = nltk_bleu(HYPS, REFS)
    for n in range(1, 5):
        assert got[f"bleu{n}"]["value"] == pytest.approx(expected[n - 1], rel=1e-12)
        assert got[f"bleu{n}"]["ci_low"] is None
    assert 0 < got["bleu4"]["value"] < got["bleu1"]["value"] < 1
    # a corpus with no 4-gram match at all exercises the smoothing, a short one the brevity penalty
    few = ts.text_metrics(HYPS[3:4] + HYPS[5:], REFS[3:4] + REFS[5:], n_boot=0)
    expected = nltk_bleu(HYPS[3:4] + HYPS[5:], REFS[3:4] + REFS[5:])
    assert [few[f"bleu{n}"]["value"] for n in range(1, 5)] == pytest.approx(expected, rel=1e-12)
    none = ts.text_metrics(["pneumothorax"], ["no effusion"], n_boot=0)
    assert none["bleu1"]["value"] == 0.0 == nltk_bleu(["pneumothorax"], ["no effusion"])[0]


def test_identical_text_scores_one() -> None:
    got = ts.text_metrics(REFS, REFS, n_boot=0)
    for name in ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l"):
        assert got[name]["value"] == pytest.approx(1.0)


def test_rouge_l_equals_rouge_score_and_a_hand_value() -> None:
    got = ts.rouge_l(HYPS, REFS)
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    np.testing.assert_allclose(got, [scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(HYPS, REFS, strict=True)])
    # LCS("left pleural effusion", "small left pleural effusion") = 3: P = 1, R = 3/4, F = 6/7
    assert ts.rouge_l(["left pleural effusion"], ["small left pleural effusion"])[0] == pytest.approx(6 / 7)
    assert ts.text_metrics(HYPS, REFS, n_boot=0)["rouge_l"]["value"] == pytest.approx(got.mean())


def test_intervals_equal_library_values_on_resampled_queries() -> None:
    n_boot, seed = 40, 7
    got = ts.text_metrics(HYPS, REFS, n_boot=n_boot, seed=seed)
    idx = np.random.default_rng(seed).integers(0, len(HYPS), size=(n_boot, len(HYPS)))  # resample_counts' draw
    bleu = np.array([nltk_bleu([HYPS[i] for i in row], [REFS[i] for i in row]) for row in idx])
    rouge = ts.rouge_l(HYPS, REFS)[idx].mean(axis=1)
    for n in range(1, 5):
        lo, hi = np.percentile(bleu[:, n - 1], [2.5, 97.5])
        assert got[f"bleu{n}"]["ci_low"] == pytest.approx(lo, rel=1e-9)
        assert got[f"bleu{n}"]["ci_high"] == pytest.approx(hi, rel=1e-9)
    assert [got["rouge_l"]["ci_low"], got["rouge_l"]["ci_high"]] == pytest.approx(np.percentile(rouge, [2.5, 97.5]))


def test_queries_without_reference_are_left_out() -> None:
    refs = REFS[:3] + ["", "  "] + REFS[5:]
    got = ts.text_metrics(HYPS, refs, n_boot=0)
    keep = [0, 1, 2, 5]
    expected = nltk_bleu([HYPS[i] for i in keep], [REFS[i] for i in keep])
    assert [got[f"bleu{n}"]["value"] for n in range(1, 5)] == pytest.approx(expected, rel=1e-12)
    assert got["rouge_l"]["value"] == pytest.approx(ts.rouge_l([HYPS[i] for i in keep], [REFS[i] for i in keep]).mean())
    assert got["n"] == {"queries": 6, "with_reference": 4}


def test_bertscore_absent_without_a_local_model(tmp_path: Path) -> None:
    got = ts.text_metrics(HYPS, REFS, n_boot=0)
    assert got["bertscore_f1"]["value"] is None and "no local BERTScore model folder" in got["bertscore_f1"]["absent"]
    missing = ts.text_metrics(HYPS, REFS, n_boot=0, bertscore_model=tmp_path / "roberta-large")
    assert "BERTScore model folder not found" in missing["bertscore_f1"]["absent"]


@pytest.mark.slow
def test_bertscore_with_a_tiny_local_model(tmp_path: Path) -> None:
    pytest.importorskip("bert_score")
    import torch
    from bert_score import score
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = sorted({w for t in HYPS + REFS for w in ts.tokenize(t)} | {",", "."})
    folder = tmp_path / "tiny-bert"
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), model_max_length=512).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(words) + 5, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64)
    BertModel(config).save_pretrained(folder)
    got = ts.text_metrics(HYPS, REFS[:3] + [""] + REFS[4:], n_boot=0, bertscore_model=folder, device="cpu")
    keep = [0, 1, 2, 4, 5]
    _, _, f1 = score([HYPS[i] for i in keep], [REFS[i] for i in keep], model_type=str(folder), num_layers=2,
                     device="cpu")
    assert got["bertscore_f1"]["value"] == pytest.approx(float(f1.double().mean()), rel=1e-6)
    same = ts.text_metrics(REFS, REFS, n_boot=0, bertscore_model=folder, device="cpu")
    assert same["bertscore_f1"]["value"] == pytest.approx(1.0, abs=1e-5)


def test_markdown_section() -> None:
    model = ts.text_metrics(HYPS, REFS, n_boot=20)
    oracle = ts.text_metrics(REFS, REFS, n_boot=0)
    md = ts.to_markdown({"model": model, "oracle": oracle}).splitlines()
    assert md[0] == "| method | bleu1 | bleu2 | bleu3 | bleu4 | rouge_l | bertscore_f1 |"
    b1 = model["bleu1"]
    assert md[2].startswith(f"| model | {b1['value']:.3f} [{b1['ci_low']:.3f}, {b1['ci_high']:.3f}] |")
    assert md[2].endswith("| absent |")
    assert md[3].startswith("| oracle | 1.000 | 1.000 |")
    assert md[-1].startswith("BERTScore absent: no local BERTScore model folder")


def test_counts_and_rouge_equal_the_libraries_on_many_random_texts() -> None:
    """The shared-cache counts equal nltk's modified_precision and rapidfuzz's LCS gives rouge-score's F."""
    from nltk.translate.bleu_score import modified_precision

    rng = np.random.default_rng(0)
    vocab = ["no", "pleural", "effusion", "heart", "is", "normal", ".", ",", "left", "Mild", "edema", "1"]
    texts = [" ".join(rng.choice(vocab, size=rng.integers(0, 15))) for _ in range(120)]
    hyps, refs = texts[:60], texts[60:]
    cache = ts.TextCache()
    arrays = ts.corpus_bleu_arrays(hyps, refs, cache=cache)
    for q, (h, r) in enumerate(zip(hyps, refs, strict=True)):
        for n in range(1, 5):
            p = modified_precision([ts.tokenize(r)], ts.tokenize(h), n)
            assert (arrays[f"match_{n}"][q], arrays[f"total_{n}"][q]) == (p.numerator, p.denominator) or (
                p.numerator == 0 and arrays[f"match_{n}"][q] == 0
            ), (h, r, n)
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    expected = [scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs, strict=True)]
    np.testing.assert_allclose(ts.rouge_l(hyps, refs, cache), expected, rtol=1e-12, atol=1e-12)


def test_tokenize_is_wordpunct_without_punctuation_tokens() -> None:
    import regex  # the engine nltk's wordpunct uses: "word character" means the same on both sides
    from nltk.tokenize import wordpunct_tokenize

    rng = np.random.default_rng(1)
    alphabet = list("abcXYZ019 .,;:-/()'\"\n\t") + ["é", "ß", "µ", "²", "_", "–"]
    for _ in range(300):
        text = "".join(rng.choice(alphabet, size=rng.integers(0, 40)))
        expected = [t for t in wordpunct_tokenize(text.lower()) if regex.search(r"\w", t)]
        assert ts.tokenize(text) == expected, text
