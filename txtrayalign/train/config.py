"""Experiment settings: the defaults, merging a user's JSON onto them, and validation.

Every key is known here; an unknown key is an error that names it, so a typo never silently
falls back to a default.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

DEFAULTS: dict[str, Any] = {
    "name": None,  # informational: the experiment's name
    "image_encoder": {"name": "compact_cnn", "weights": "none"},
    "text_encoder": {"name": "small_bert", "pooling": "mean", "max_length": 64, "vocab_size": 4000,
                     "dropout": None},  # dropout: null = the model's own,
    "embed_dim": 128,
    "train": {
        "epochs": 10,
        "batch_size": 64,
        "micro_batch_size": None,
        "image_size": 128,
        "optimizer": "adamw",
        "lr_image": 1e-3,
        "lr_text": 1e-3,
        "lr_head": 1e-3,
        "weight_decay": 0.01,
        "warmup_steps": 20,
        "sentences_per_image": 2,
        "text_mode": "sentences",
        "temperature_init": 0.07,
        "learnable_temperature": True,
        "distill": {"enabled": False, "weight": 0.5, "ema": 0.999},
        "freeze_image": False,
        "freeze_text": False,
        "freeze_text_layers": 0,
        "precision": "auto",
        "channels_last": True,
        "compile": False,
        "grad_clip": 1.0,
        "checkpoint_every": 200,
        "num_workers": 2,
        "seed": 0,
        "gpus": 1,
        "augment": {"crop_scale": [0.8, 1.0], "rotation": 5.0, "brightness": 0.1, "contrast": 0.1},
    },
}

CHOICES = {
    "text_encoder.pooling": ("cls", "mean"),
    "train.optimizer": ("adamw", "sgd"),
    "train.text_mode": ("sentences", "section"),
    "train.precision": ("auto", "fp32", "bf16", "fp16"),
}


def _merge(base: dict, override: dict, prefix: str) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        where = f"{prefix}{key}"
        if key not in base:
            known = ", ".join(sorted(base))
            raise ValueError(f"unknown key '{where}' in the experiment settings; known keys here: {known}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ValueError(f"experiment setting '{where}' must be a mapping, got {value!r}")
            out[key] = _merge(base[key], value, where + ".")
        else:
            out[key] = value
    return out


def _get(cfg: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


def validate(cfg: dict) -> None:
    """Raise ValueError naming the key for values that cannot work."""
    for key, allowed in CHOICES.items():
        if _get(cfg, key) not in allowed:
            raise ValueError(f"experiment setting '{key}' must be one of {list(allowed)}, got {_get(cfg, key)!r}")
    t = cfg["train"]
    positive_ints = ["epochs", "batch_size", "image_size", "sentences_per_image", "checkpoint_every", "gpus"]
    for key in positive_ints:
        if not isinstance(t[key], int) or t[key] < 1:
            raise ValueError(f"experiment setting 'train.{key}' must be a positive integer, got {t[key]!r}")
    mb = t["micro_batch_size"]
    if mb is not None and (not isinstance(mb, int) or mb < 1 or mb > t["batch_size"]):
        raise ValueError(f"'train.micro_batch_size' must be null or an integer in 1..batch_size, got {mb!r}")
    if not isinstance(cfg["embed_dim"], int) or cfg["embed_dim"] < 1:
        raise ValueError(f"'embed_dim' must be a positive integer, got {cfg['embed_dim']!r}")
    lo, hi = t["augment"]["crop_scale"]
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"'train.augment.crop_scale' must be [low, high] with 0 < low <= high <= 1, got {[lo, hi]}")
    if not 0 < t["distill"]["ema"] < 1:
        raise ValueError(f"'train.distill.ema' must be in (0, 1), got {t['distill']['ema']}")
    if t["num_workers"] < 0 or t["freeze_text_layers"] < 0 or t["warmup_steps"] < 0:
        raise ValueError("'train.num_workers', 'train.freeze_text_layers' and 'train.warmup_steps' must be >= 0")


def resolve(experiment: str | dict | None) -> dict:
    """Defaults overlaid with the experiment's settings: a dict, a JSON string or a path to a JSON file."""
    if experiment is None:
        user: dict = {}
    elif isinstance(experiment, dict):
        user = experiment
    else:
        text = str(experiment).strip()
        if not text.startswith("{") and Path(text).is_file():
            text = Path(text).read_text()
        try:
            user = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"--experiment-json is neither valid JSON nor an existing file: {e}") from e
    if not isinstance(user, dict):
        raise ValueError("the experiment settings must be a JSON object")
    cfg = _merge(DEFAULTS, user, "")
    validate(cfg)
    return cfg
