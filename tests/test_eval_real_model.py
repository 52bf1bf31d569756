"""`embed` with the project's real (untrained, tiny) model via `txtrayalign.train.load_model`.

On CPU: the embeddings are unit vectors and equal a direct call of the model's encoders. On CUDA
(skipped without it): float16 autocast embeddings agree with the CPU ones, and evaluation runs on them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from test_evaluate_cli import build_fixture, embed_args, evaluate_args

from txtrayalign.cli import main
from txtrayalign.evaluate.embed import read_bank, read_queries


def make_model_dir(model_dir: Path, corpus: list[str]) -> None:
    """A tiny untrained model saved the way training saves one (config.yaml, best.pt, tokenizer/)."""
    from txtrayalign.train import checkpoint
    from txtrayalign.train.model import ClipModel
    from txtrayalign.train.tokenizer import get_tokenizer
    from txtrayalign.train.toydata import tiny_experiment

    torch.manual_seed(0)
    cfg = tiny_experiment(image_size=16)
    tok = get_tokenizer(cfg["text_encoder"], model_dir, corpus=corpus)
    model = ClipModel(cfg, tok, pretrained=False).eval()
    (model_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    checkpoint.save(model_dir / "best.pt", {"model": model.state_dict()})


@pytest.fixture(scope="module")
def real_setup(tmp_path_factory) -> tuple[dict[str, Path], Path]:
    pytest.importorskip("txtrayalign.train.model")
    root = tmp_path_factory.mktemp("realmodel")
    paths = build_fixture(root)
    model_dir = root / "models" / "exp1"
    model_dir.mkdir(parents=True)
    make_model_dir(model_dir, pd.read_parquet(paths["sentences"])["sentence"].tolist())
    return paths, root


def _with_device(args: list[str], device: str, out: Path) -> list[str]:
    args = list(args)
    args[args.index("--device") + 1] = device
    args[args.index("--out-queries") + 1] = str(out / "queries.h5")
    args[args.index("--out-bank") + 1] = str(out / "bank.h5")
    return args


@pytest.mark.slow
def test_embed_with_real_model_on_cpu_matches_direct_encoding(real_setup):
    from txtrayalign.images.shards import ShardReader
    from txtrayalign.train import load_model

    paths, root = real_setup
    out = root / "emb_cpu"
    assert main(_with_device(embed_args(paths, root), "cpu", out)) == 0
    q, bank = read_queries(out / "queries.h5"), read_bank(out / "bank.h5")
    np.testing.assert_allclose(np.linalg.norm(q.embeddings, axis=1), 1.0, rtol=1e-5)
    model = load_model(root / "models" / "exp1", "cpu")
    reader = ShardReader(paths["index"])
    with torch.no_grad():
        direct = model.encode_images(torch.from_numpy(reader.get_many(list(q.dicom_id[:3])))).numpy()
    np.testing.assert_allclose(q.embeddings[:3], direct, atol=1e-5)
    texts = pd.read_parquet(paths["sentences"]).set_index("sentence_id").loc[bank.sentence_id[:4], "sentence"]
    with torch.no_grad():
        direct_t = model.encode_texts(texts.tolist()).numpy()
    np.testing.assert_allclose(bank.embeddings[:4], direct_t, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_embed_on_cuda_agrees_with_cpu_and_evaluates(real_setup, tmp_path):
    paths, root = real_setup
    cpu, gpu = tmp_path / "cpu", tmp_path / "gpu"
    assert main(_with_device(embed_args(paths, root), "cpu", cpu)) == 0
    args = _with_device(embed_args(paths, root), "cuda", gpu)
    args[args.index("--dtype") + 1] = "float16"
    assert main(args) == 0
    for name, reader in (("queries.h5", read_queries), ("bank.h5", read_bank)):
        a, b = reader(cpu / name).embeddings, reader(gpu / name).embeddings
        assert b.dtype == np.float16
        cos = (a * b.astype(np.float32)).sum(axis=1)
        assert cos.min() > 0.99, (name, cos.min())
    out = tmp_path / "eval" / "exp1"
    assert main(evaluate_args(paths, gpu, out)) == 0
    assert json.loads((out / "metrics.json").read_text())["n_queries"] == 8
