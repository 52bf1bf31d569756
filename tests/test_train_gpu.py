"""CUDA paths of training (bf16 autocast; fp16 with GradScaler, micro-batches and distillation); skipped without CUDA."""

from __future__ import annotations

import pytest
import torch

from txtrayalign.train import load_model
from txtrayalign.train.loop import Inputs, train
from txtrayalign.train.toydata import tiny_experiment, write_toy_dataset

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("precision,micro,distill", [("bf16", None, False), ("fp16", 4, True)])
def test_cuda_training_runs_and_loads(tmp_path, precision, micro, distill):
    toy = write_toy_dataset(tmp_path / "toy", studies=60, image_size=32)
    cfg = tiny_experiment(epochs=2, precision=precision, micro_batch_size=micro,
                          distill={"enabled": distill, "weight": 0.5, "ema": 0.9})
    out = tmp_path / "run"
    summary = train(cfg, Inputs(toy["images_index"], toy["split"], out, toy["sentences"]), device="cuda")
    assert summary["finished"] and summary["val_loss"] == summary["val_loss"]  # finite, not NaN
    model = load_model(out, "cuda")
    with torch.no_grad():
        z = model.encode_images(torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8))
    assert z.is_cuda and z.dtype == torch.float32 and torch.allclose(z.norm(dim=1), torch.ones(3, device="cuda"))
