"""Image and text encoders chosen by name through a small registry (timm-style).

An image encoder maps float (N,3,S,S) normalised pixels to (N,F) features and exposes
`out_features`; a text encoder maps (input_ids, attention_mask) to (N,F) pooled features.
Pretrained weights are loaded for real; when they cannot be found the error says what to
download and where to put it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from txtrayalign.errors import InputError
from txtrayalign.train.names import (
    IMAGE_ENCODER_NAMES,
    IMAGENET_URLS,
    TIMM_PREFIX,
    experiment_problems,  # noqa: F401  (re-exported: the checks' old home)
    list_image_encoders,
    offline,
    problems_report,  # noqa: F401
    text_encoder_problem,
    timm_problem,
    torch_hub_checkpoint,
)
from txtrayalign.train.pretrained import LAYER_PATHS, find_layers

log = logging.getLogger(__name__)

IMAGE_ENCODERS: dict[str, Callable[..., nn.Module]] = {}


def register_image_encoder(name: str) -> Callable:
    if name not in IMAGE_ENCODER_NAMES:  # the dry run checks names against that torch-free list
        raise ValueError(f"image encoder {name!r}: add it to txtrayalign.train.names.IMAGE_ENCODER_NAMES")

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        IMAGE_ENCODERS[name] = fn
        return fn

    return wrap


def build_image_encoder(name: str, weights: str = "none") -> nn.Module:
    if name.startswith(TIMM_PREFIX):
        return timm_encoder(name[len(TIMM_PREFIX):], weights)
    if name not in IMAGE_ENCODERS:
        raise InputError(f"unknown image encoder '{name}'; available: {list_image_encoders()}")
    return IMAGE_ENCODERS[name](weights=weights)


# ---------------------------------------------------------------- image encoders


class CompactCNN(nn.Module):
    """A small from-scratch CNN (~0.5M parameters) for CPU demos.

    `norm="batch"` (compact_cnn): BatchNorm, like the torchvision CNNs; it keeps the features of the
    images in a batch apart, which contrastive training from scratch needs to escape the collapsed
    start. `norm="group"` (compact_cnn_gn): GroupNorm, no dependence between the samples of a batch,
    so micro-batched and multi-process gradients equal full-batch ones exactly. The last layer is a
    1x1 convolution without normalisation before the average pooling.
    """

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 192), norm: str = "batch") -> None:
        super().__init__()

        def norm_layer(c: int) -> nn.Module:
            return nn.BatchNorm2d(c) if norm == "batch" else nn.GroupNorm(8, c)

        layers: list[nn.Module] = []
        c_in = 3
        for i, c in enumerate(widths):
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1, bias=False), norm_layer(c), nn.ReLU(inplace=True)]
            if i in (1, 2):
                layers += [nn.Conv2d(c, c, 3, padding=1, bias=False), norm_layer(c), nn.ReLU(inplace=True)]
            c_in = c
        layers += [nn.Conv2d(c_in, c_in, 1), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.out_features = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


def _compact(weights: str, norm: str, name: str) -> nn.Module:
    model = CompactCNN(norm=norm)
    if weights not in ("none", None):
        if weights == "imagenet":
            raise InputError(f"{name} has no ImageNet weights; use weights: none or a local state dict path")
        load_state_dict_file(model, weights, name)
    return model


@register_image_encoder("compact_cnn")
def compact_cnn(weights: str = "none") -> nn.Module:
    return _compact(weights, "batch", "compact_cnn")


@register_image_encoder("compact_cnn_gn")
def compact_cnn_gn(weights: str = "none") -> nn.Module:
    return _compact(weights, "group", "compact_cnn_gn")


def load_imagenet(model: nn.Module, name: str) -> None:
    """Load torchvision ImageNet weights from the torch hub cache (downloading only when online)."""
    url = IMAGENET_URLS[name]
    cached = torch_hub_checkpoint(url)
    hint = (
        f"ImageNet weights for {name} are not in the torch hub cache {cached}: download {url} "
        f"to that path on a machine with internet (or set image_encoder.weights to 'none' or a local .pt/.pth path)"
    )
    if not cached.is_file():
        if offline():
            raise FileNotFoundError(hint + " [offline: HF_HUB_OFFLINE/TXTRAYALIGN_OFFLINE is set]")
        try:
            torch.hub.load_state_dict_from_url(url, model_dir=str(cached.parent), progress=True, check_hash=False)
        except Exception as e:  # network errors come in many types
            raise FileNotFoundError(f"{hint} [download failed: {e}]") from e
    state = torch.load(cached, map_location="cpu", weights_only=True)
    _load_backbone_state(model, state, f"ImageNet weights {cached}")


def _strip_prefixes(state: dict) -> dict:
    for wrapper in ("state_dict", "model"):
        if wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
    out = {}
    for k, v in state.items():
        for prefix in ("module.", "encoder.", "backbone."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v
    return out


HEAD_PREFIXES = ("fc.", "classifier.")  # classification heads: replaced by the projection


def _load_backbone_state(model: nn.Module, state: dict, source: str) -> None:
    state = {k: v for k, v in _strip_prefixes(state).items() if not k.startswith(HEAD_PREFIXES)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(HEAD_PREFIXES)]
    if missing or unexpected:
        raise InputError(
            f"{source} does not fit the encoder: {len(missing)} missing key(s) (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    log.info("loaded image encoder weights from %s", source)


def load_state_dict_file(model: nn.Module, path: str | os.PathLike, name: str) -> None:
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(
            f"weight file for image encoder {name} not found: {p} (image_encoder.weights must be 'none', "
            "'imagenet' or the path of a .pt/.pth state dict)"
        )
    state = torch.load(p, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise InputError(f"{p} does not hold a state dict (a mapping of parameter names to tensors)")
    _load_backbone_state(model, state, str(p))


def _torchvision_encoder(name: str, weights: str, constructor, head_attr: str) -> nn.Module:
    model = constructor(weights=None)
    if weights == "imagenet":
        load_imagenet(model, name)
    elif weights not in ("none", None):
        load_state_dict_file(model, weights, name)
    head = getattr(model, head_attr)
    out = head.in_features if isinstance(head, nn.Linear) else head[-1].in_features
    setattr(model, head_attr, nn.Identity())
    model.out_features = out
    return model


@register_image_encoder("resnet18")
def resnet18(weights: str = "none") -> nn.Module:
    from torchvision import models

    return _torchvision_encoder("resnet18", weights, models.resnet18, "fc")


@register_image_encoder("resnet50")
def resnet50(weights: str = "none") -> nn.Module:
    from torchvision import models

    return _torchvision_encoder("resnet50", weights, models.resnet50, "fc")


@register_image_encoder("efficientnet_b0")
def efficientnet_b0(weights: str = "none") -> nn.Module:
    from torchvision import models

    return _torchvision_encoder("efficientnet_b0", weights, models.efficientnet_b0, "classifier")


# ---------------------------------------------------------------- timm image encoders


def timm_encoder(name: str, weights: str = "none") -> nn.Module:
    """A timm backbone without its classifier (num_classes=0); `weights`: none, imagenet (timm's default
    pretrained tag, read from the Hugging Face cache) or a state dict file."""
    import timm

    problem = timm_problem(name, weights)
    if problem:
        raise FileNotFoundError(f"timm:{name}: {problem}")
    model = timm.create_model(name, pretrained=weights == "imagenet", num_classes=0)
    if weights not in ("none", "imagenet", None):
        load_state_dict_file(model, weights, f"timm:{name}")
    model.out_features = int(model.num_features)
    cfg = model.pretrained_cfg or {}
    model.preprocess = {"mean": list(cfg.get("mean", (0.485, 0.456, 0.406))),
                        "std": list(cfg.get("std", (0.229, 0.224, 0.225))),
                        "interpolation": cfg.get("interpolation", "bilinear")}
    return model


# ---------------------------------------------------------------- text encoders


class TextEncoder(nn.Module):
    """A transformers encoder with CLS or attention-masked mean pooling."""

    def __init__(self, model: nn.Module, pooling: str) -> None:
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"text pooling must be 'cls' or 'mean', got {pooling!r}")
        if getattr(model, "pooler", None) is not None:
            model.pooler = None  # unused: we pool ourselves (keeps every parameter in the graph)
        self.model = model
        self.pooling = pooling
        self.out_features = model.config.hidden_size

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)

    def layers(self) -> list[nn.Module]:
        """The transformer blocks in order (for freezing the first N)."""
        return find_layers(self.model, LAYER_PATHS)

    def embeddings(self) -> nn.Module | None:
        return getattr(self.model, "embeddings", None)


DROPOUT_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout")


def _set_dropout(config, dropout: float | None) -> None:
    if dropout is None:
        return
    for field in DROPOUT_FIELDS:
        if hasattr(config, field):
            setattr(config, field, float(dropout))


def small_bert_config(vocab_size: int, max_length: int, dropout: float | None = None):
    from transformers import BertConfig

    config = BertConfig(
        vocab_size=vocab_size, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=512, max_position_embeddings=max(128, max_length),
    )
    _set_dropout(config, dropout)
    return config


def build_text_encoder(name: str, pooling: str, tokenizer, max_length: int, dropout: float | None = None,
                       pretrained: bool = True) -> TextEncoder:
    """`small_bert` (from scratch, vocabulary from `tokenizer`) or a Hugging Face model by hub name or folder.

    `pretrained=False` builds a Hugging Face model from its configuration only (weights come from a checkpoint).
    """
    from transformers import AutoConfig, AutoModel, BertModel

    if name == "small_bert":
        config = small_bert_config(len(tokenizer), max_length, dropout)
        return TextEncoder(BertModel(config, add_pooling_layer=False), pooling)
    problem = text_encoder_problem(name) if pretrained else None
    if problem:
        raise OSError(hf_hint(name, problem))
    try:
        local = {"local_files_only": True} if offline() else {}
        config = AutoConfig.from_pretrained(name, **local)
        _set_dropout(config, dropout)
        model = AutoModel.from_pretrained(name, config=config, **local) if pretrained else AutoModel.from_config(config)
    except Exception as e:
        raise OSError(hf_hint(name, e)) from e
    return TextEncoder(model, pooling)


def hf_hint(name: str, error: Exception | str) -> str:
    why = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return (
        f"could not load '{name}': run `hf download {name} --local-dir models/hf/{Path(name).name}` "
        f"on a machine with internet and set text_encoder.name to the local folder, or put it in the Hugging Face "
        f"cache (HF_HOME / HF_HUB_CACHE) ({why})"
    )
