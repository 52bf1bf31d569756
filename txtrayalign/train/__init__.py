"""Contrastive (CLIP-style) training of image and text encoders, and loading trained models.

`train(cfg, inputs, ...)` runs one experiment; `load_model(model_dir, device)` rebuilds the
trained encoders for inference (`encode_images`, `encode_texts`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def load_model(model_dir: str | Path, device: str | torch.device = "cpu", checkpoint: str = "best.pt"):
    """The trained model of `model_dir` (config.yaml + best.pt + tokenizer/), in eval mode on `device`."""
    import torch  # here, not at the top: the dry run imports txtrayalign.train.names without torch
    import yaml

    from txtrayalign.train import checkpoint as ckpt
    from txtrayalign.train.config import resolve
    from txtrayalign.train.model import ClipModel
    from txtrayalign.train.tokenizer import get_tokenizer

    model_dir = Path(model_dir)
    config_path, weights_path = model_dir / "config.yaml", model_dir / checkpoint
    for p in (config_path, weights_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p} not found: is {model_dir} a finished training run?")
    cfg = resolve(yaml.safe_load(config_path.read_text()))
    tokenizer = get_tokenizer(cfg["text_encoder"], model_dir)
    model = ClipModel(cfg, tokenizer, pretrained=False)
    model.load_state_dict(ckpt.load(weights_path)["model"])
    return model.to(torch.device(device)).eval()


def train(cfg, inputs, device: str = "auto", max_steps: int | None = None) -> dict:
    """Train one experiment (see txtrayalign.train.loop.train)."""
    from txtrayalign.train.loop import train as _train

    return _train(cfg, inputs, device=device, max_steps=max_steps)


__all__ = ["load_model", "train"]
