"""CheXbert backend: a tiny random BERT with CheXbert's exact head layout, saved as DataParallel does."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from txtrayalign import chexbert
from txtrayalign.constants import OBSERVATIONS

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "testdata" / "reports"
WORDS = (
    "no acute cardiopulmonary process . there is a small left pleural effusion and mild edema "
    "cardiomegaly is stable the lungs are clear pneumothorax atelectasis at bases tube line in place "
    "heart size normal consolidation possible pneumonia cannot be excluded , 1 2 3"
).split()


def write_tokenizer(folder: Path) -> Path:
    from transformers import BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(WORDS)]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    return folder


def tiny_model(vocab_size: int, heads: list[int] | None = None, seed: int = 0) -> chexbert.CheXbertModel:
    from transformers import BertConfig

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=64,  # one attention head of 64 (BERT's convention) unless config.json says otherwise
        num_hidden_layers=2,
        num_attention_heads=1,
        intermediate_size=96,
        max_position_embeddings=512,
    )
    return chexbert.CheXbertModel(config, head_classes=heads or chexbert.HEAD_CLASSES)


def save_like_chexbert(model: torch.nn.Module, path: Path, extra: dict | None = None, drop: str = "") -> Path:
    """What CheXbert's training saves: {'model_state_dict': DataParallel(model).state_dict(), ...}."""
    state = torch.nn.DataParallel(model).state_dict()
    assert all(k.startswith("module.") for k in state)
    state = {k: v for k, v in state.items() if not (drop and k.startswith(drop))}
    state.update(extra or {})
    torch.save({"epoch": 3, "model_state_dict": state}, path)
    return path


@pytest.fixture()
def tok_dir(tmp_path: Path) -> Path:
    return write_tokenizer(tmp_path / "tokenizer")


def sample_reports() -> list[str]:
    path = SHARED / "chexpert_sample_reports.csv"
    if not path.is_file():
        pytest.skip(f"real sample reports absent: {path}")
    with open(path, newline="") as f:
        return [row[0] for row in csv.reader(f) if row]


def test_loads_and_maps_classes_in_chexbert_order(tmp_path: Path, tok_dir: Path) -> None:
    """Head biases decide the class; the output columns follow OBSERVATIONS with CheXbert's class values."""
    tok = chexbert.load_tokenizer(tok_dir)
    model = tiny_model(len(tok))
    wanted = [1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 2, 1]  # class per head, CheXbert's head order
    with torch.no_grad():
        for head, c in zip(model.linear_heads, wanted, strict=True):
            head.weight.zero_()
            head.bias.fill_(-5.0)
            head.bias[c] = 5.0
    ckpt = save_like_chexbert(model, tmp_path / "chexbert.pth")
    labels = chexbert.label_reports(
        ["Small left pleural effusion.", "", "no acute cardiopulmonary process"],
        checkpoint=ckpt, batch_size=2, device="cpu", tokenizer=tok_dir,
    )
    value = {0: np.nan, 1: 1.0, 2: 0.0, 3: -1.0}
    expected = [value[wanted[chexbert.CHEXBERT_CONDITIONS.index(name)]] for name in OBSERVATIONS]
    assert labels.shape == (3, 14) and labels.dtype == np.float64
    for row in labels:
        np.testing.assert_array_equal(row, expected)
    # spot checks against CheXbert's own names: Lung Opacity is its head 2, Lung Lesion its head 3.
    assert labels[0, OBSERVATIONS.index("Lung Opacity")] == -1.0  # class 3, uncertain
    assert np.isnan(labels[0, OBSERVATIONS.index("Lung Lesion")])  # class 0, blank
    assert labels[0, OBSERVATIONS.index("No Finding")] == 1.0  # two-class head, class 1
    assert labels[0, OBSERVATIONS.index("Support Devices")] == 0.0  # class 2, negative


def text_dependent_heads(model: chexbert.CheXbertModel, tok, reports: list[str]) -> None:
    """Random heads whose biases cancel the mean [CLS] state, so the arg-max varies between reports."""
    enc = tok(reports, padding=True, truncation=True, max_length=512, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        cls = model.bert(enc["input_ids"], attention_mask=enc["attention_mask"])[0][:, 0, :]
        centre = cls.mean(dim=0)
        for head in model.linear_heads:
            head.weight.mul_(50.0)
            head.bias.copy_(-(head.weight @ centre))


def test_batched_padding_gives_the_same_labels_as_one_by_one(tmp_path: Path, tok_dir: Path) -> None:
    """Random heads: labels depend on the text; padding inside a batch must not change them."""
    reports = sample_reports() + ["Cardiomegaly is stable.", "No pneumothorax.", "Tube in place. " * 40]
    tok = chexbert.load_tokenizer(tok_dir)
    model = tiny_model(len(tok), seed=1)
    text_dependent_heads(model, tok, reports)
    ckpt = save_like_chexbert(model, tmp_path / "chexbert.pth")
    one = chexbert.CheXbertLabeller.load(ckpt, tokenizer=tok_dir, device="cpu", batch_size=1)
    batched = chexbert.CheXbertLabeller.load(ckpt, tokenizer=tok_dir, device="cpu", batch_size=4)
    a, b = one.label_texts(reports), batched.label_texts(reports)
    np.testing.assert_array_equal(a, b)
    classes = one.predict_classes(reports)
    assert len({tuple(r) for r in classes}) > 1, "random heads should not give every report the same classes"
    # and the value mapping applied to those classes
    np.testing.assert_array_equal(a, chexbert.classes_to_values(classes))


def test_truncation_matches_chexbert(tok_dir: Path) -> None:
    """CheXbert: tokenize, encode_plus, keep res[:511] + [SEP] when longer than 512; empty -> [CLS][SEP]."""
    tok = chexbert.load_tokenizer(tok_dir)
    labeller = chexbert.CheXbertLabeller(model=None, tokenizer=tok, device=torch.device("cpu"))
    long_report = "  there is a small\nleft pleural effusion.\n\n " * 120
    short = "Mild   edema,\n cardiomegaly."

    def reference(text: str) -> list[int]:
        text = " ".join(text.strip().split())
        pieces = tok.tokenize(text)
        if not pieces:
            return [tok.cls_token_id, tok.sep_token_id]
        res = [tok.cls_token_id, *tok.convert_tokens_to_ids(pieces), tok.sep_token_id]  # encode_plus(pieces)
        return res[:511] + [tok.sep_token_id] if len(res) > 512 else res

    got = labeller.encode([long_report, short, "", "   "])
    assert len(got[0]) == 512 and got[0][0] == tok.cls_token_id and got[0][-1] == tok.sep_token_id
    assert got == [reference(long_report), reference(short), reference(""), reference("   ")]


def test_old_checkpoints_with_position_ids_load(tmp_path: Path, tok_dir: Path) -> None:
    tok = chexbert.load_tokenizer(tok_dir)
    model = tiny_model(len(tok))
    extra = {"module.bert.embeddings.position_ids": torch.arange(512)[None]}
    ckpt = save_like_chexbert(model, tmp_path / "chexbert.pth", extra=extra)
    loaded = chexbert.CheXbertLabeller.load(ckpt, tokenizer=tok_dir, device="cpu")
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[name], tensor)


def test_attention_heads_from_config_json(tmp_path: Path, tok_dir: Path) -> None:
    (tok_dir / "config.json").write_text('{"num_attention_heads": 4}')
    tok = chexbert.load_tokenizer(tok_dir)
    ckpt = save_like_chexbert(tiny_model(len(tok)), tmp_path / "chexbert.pth")
    loaded = chexbert.CheXbertLabeller.load(ckpt, tokenizer=tok_dir, device="cpu")
    assert loaded.model.bert.config.num_attention_heads == 4
    assert loaded.model.bert.config.num_hidden_layers == 2 and loaded.model.bert.config.hidden_size == 64


@pytest.mark.parametrize(
    "heads",
    [[4] * 14, [4] * 13, [4] * 13 + [2] + [4], [3] * 13 + [2]],
    ids=["no-finding-4-classes", "13-heads", "15-heads", "3-classes"],
)
def test_head_layout_mismatch_is_a_clear_error(tmp_path: Path, tok_dir: Path, heads: list[int]) -> None:
    tok = chexbert.load_tokenizer(tok_dir)
    ckpt = save_like_chexbert(tiny_model(len(tok), heads=heads), tmp_path / "bad.pth")
    with pytest.raises(chexbert.CheXbertError, match=r"bad\.pth: linear heads .* CheXbert's layout"):
        chexbert.label_reports(["x"], checkpoint=ckpt, device="cpu", tokenizer=tok_dir)


def test_missing_encoder_keys_are_a_clear_error(tmp_path: Path, tok_dir: Path) -> None:
    tok = chexbert.load_tokenizer(tok_dir)
    ckpt = save_like_chexbert(tiny_model(len(tok)), tmp_path / "cut.pth", drop="module.bert.encoder.layer.1.output")
    with pytest.raises(chexbert.CheXbertError, match=r"cut\.pth: does not match CheXbert's layout: missing \['bert"):
        chexbert.label_reports(["x"], checkpoint=ckpt, device="cpu", tokenizer=tok_dir)


def test_not_a_state_dict_is_a_clear_error(tmp_path: Path, tok_dir: Path) -> None:
    path = tmp_path / "chexbert.pth"
    path.write_bytes(b"not a torch file")
    with pytest.raises(chexbert.CheXbertError, match="cannot be read as a CheXbert checkpoint"):
        chexbert.label_reports(["x"], checkpoint=path, device="cpu", tokenizer=tok_dir)


def test_missing_checkpoint_names_where_to_put_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(chexbert.CHECKPOINT_ENV, raising=False)
    with pytest.raises(chexbert.CheXbertError) as err:
        chexbert.label_reports(["x"], checkpoint=tmp_path / "nowhere" / "chexbert.pth")
    msg = str(err.value)
    assert "nowhere/chexbert.pth" in msg and "labels.chexbert.checkpoint" in msg and "CHEXBERT_CHECKPOINT" in msg
    with pytest.raises(chexbert.CheXbertError, match="no CheXbert checkpoint given.*CHEXBERT_CHECKPOINT"):
        chexbert.label_reports(["x"])


def test_checkpoint_from_environment(tmp_path: Path, tok_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tok = chexbert.load_tokenizer(tok_dir)
    ckpt = save_like_chexbert(tiny_model(len(tok)), tmp_path / "env.pth")
    monkeypatch.setenv(chexbert.CHECKPOINT_ENV, str(ckpt))
    monkeypatch.setenv(chexbert.TOKENIZER_ENV, str(tok_dir))
    assert chexbert.label_reports(["No pneumothorax."], device="cpu").shape == (1, 14)


def test_missing_tokenizer_names_where_to_put_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(chexbert.TOKENIZER_ENV, raising=False)
    with pytest.raises(chexbert.CheXbertError, match="not found locally.*labels.chexbert.tokenizer.*CHEXBERT_TOKENIZER"):
        chexbert.load_tokenizer(tmp_path / "no-tokenizer")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_labels_equal_cpu_labels(tmp_path: Path, tok_dir: Path) -> None:
    reports = sample_reports() + ["Cardiomegaly is stable.", "No pneumothorax."]
    tok = chexbert.load_tokenizer(tok_dir)
    model = tiny_model(len(tok), seed=2)
    text_dependent_heads(model, tok, reports)
    ckpt = save_like_chexbert(model, tmp_path / "chexbert.pth")
    cpu = chexbert.label_reports(reports, checkpoint=ckpt, device="cpu", tokenizer=tok_dir)
    labeller = chexbert.CheXbertLabeller.load(ckpt, tokenizer=tok_dir)
    assert labeller.device.type == "cuda"
    np.testing.assert_array_equal(labeller.label_texts(reports), cpu)


def test_command_line_writes_the_chexpert_output_format(tmp_path: Path, tok_dir: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    import pandas as pd

    from txtrayalign.cli import main

    src = SHARED / "chexpert_sample_reports.csv"
    reports = sample_reports()
    tok = chexbert.load_tokenizer(tok_dir)
    model = tiny_model(len(tok), seed=3)
    text_dependent_heads(model, tok, reports)
    ckpt = save_like_chexbert(model, tmp_path / "chexbert.pth")
    out = tmp_path / "labeled.csv"
    assert main(["chexbert", "--reports_path", str(src), "--output_path", str(out), "--checkpoint", str(ckpt),
                 "--tokenizer", str(tok_dir), "--device", "cpu", "--batch-size", "3"]) == 0
    table = pd.read_csv(out)
    assert list(table.columns) == ["Reports", *OBSERVATIONS]
    assert table["Reports"].tolist() == reports
    expected = chexbert.label_reports(reports, checkpoint=ckpt, device="cpu", tokenizer=tok_dir)
    np.testing.assert_array_equal(table[OBSERVATIONS].to_numpy(), expected)
    assert main(["chexbert", "--reports_path", str(src), "--checkpoint", str(tmp_path / "none.pth"),
                 "--output_path", str(tmp_path / "never.csv")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("txtrayalign chexbert: error: ") and "CHEXBERT_CHECKPOINT" in last
    assert not (tmp_path / "never.csv").exists()


def test_repeated_texts_are_labelled_once(tmp_path: Path, tok_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tok = chexbert.load_tokenizer(tok_dir)
    ckpt = save_like_chexbert(tiny_model(len(tok)), tmp_path / "chexbert.pth")
    labeller = chexbert.CheXbertLabeller.load(ckpt, tokenizer=tok_dir, device="cpu")
    seen: list[list[str]] = []
    original = labeller.predict_classes
    monkeypatch.setattr(labeller, "predict_classes", lambda texts: seen.append(list(texts)) or original(texts))
    texts = ["No pneumothorax.", "Mild edema.", "No pneumothorax.", None, ""]
    got = labeller.label_texts(texts)
    assert sorted(seen[0]) == ["", "Mild edema.", "No pneumothorax."]
    np.testing.assert_array_equal(got[0], got[2])
    np.testing.assert_array_equal(got[3], got[4])
    np.testing.assert_array_equal(got[1], chexbert.classes_to_values(original(["Mild edema."]))[0])


def test_real_chexbert_output_follows_the_head_order_and_class_values() -> None:
    """CheXbert's labels of real IU X-ray findings: its column order and values are what we map to."""
    import pandas as pd

    path = SHARED / "iu_dev" / "chexbert_findings.csv"
    if not path.is_file():
        pytest.skip(f"real CheXbert labels absent: {path}")
    table = pd.read_csv(path)
    assert list(table.columns[1:]) == chexbert.CHEXBERT_CONDITIONS
    values = table[chexbert.CHEXBERT_CONDITIONS]
    # No Finding's two-class head: blank or positive only; the others the four classes' values
    assert set(values["No Finding"].dropna().unique()) == {1.0}
    four = values.drop(columns="No Finding").to_numpy().ravel()
    assert set(np.unique(four[~np.isnan(four)])) == {-1.0, 0.0, 1.0}
    assert np.isnan(four).any()
    # every row is some class assignment of the heads, mapped back exactly
    classes = np.select([values.isna(), values == 1, values == 0, values == -1], [0, 1, 2, 3])
    ours = chexbert.classes_to_values(classes)
    expected = table[OBSERVATIONS].to_numpy()
    np.testing.assert_array_equal(ours, expected)
