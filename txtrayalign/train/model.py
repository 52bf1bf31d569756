"""The two-tower model: encoders, linear projections to `embed_dim`, and a learnable temperature.

A pretrained pair (`txtrayalign.train.pretrained`) brings its own towers, projections into its shared
space, temperature and preprocessing; its `embed_dim` is the pair's, the experiment's is not used.
The preprocessing a model uses is `model.preprocessing`, written to `<model_dir>/preprocessing.json`
when the model is built for training and read back when it is loaded for embedding.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from txtrayalign.errors import InputError
from txtrayalign.train.encoders import build_image_encoder, build_text_encoder
from txtrayalign.train.pretrained import build_pair, is_pair
from txtrayalign.utils import atomic_path

log = logging.getLogger(__name__)
PREPROCESSING_FILE = "preprocessing.json"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LOGIT_SCALE_MAX = 100.0


class ClipModel(nn.Module):
    """Image and text towers. `forward` returns L2-normalised float32 embeddings of both."""

    def __init__(self, cfg: dict, tokenizer, pretrained: bool = True, model_dir: str | Path | None = None) -> None:
        super().__init__()
        t = cfg["train"]
        self.max_length = int(cfg["text_encoder"]["max_length"])
        self.channels_last = bool(t["channels_last"])
        name = cfg["image_encoder"]["name"]
        log_scale = math.log(1.0 / t["temperature_init"])
        if is_pair(name):
            pair = build_pair(name, cfg["image_encoder"]["weights"], pretrained=pretrained)
            self.image_encoder, self.text_encoder = pair.image_tower, pair.text_tower
            self.image_proj, self.text_proj = nn.Identity(), nn.Identity()  # the pair's own projections are inside
            log_scale = min(pair.logit_scale, math.log(LOGIT_SCALE_MAX))
            pre = pair.preprocessing
        else:
            weights = cfg["image_encoder"]["weights"] if pretrained else "none"
            self.image_encoder = build_image_encoder(name, weights)
            self.text_encoder = build_text_encoder(
                cfg["text_encoder"]["name"], cfg["text_encoder"]["pooling"], tokenizer, self.max_length,
                cfg["text_encoder"]["dropout"], pretrained=pretrained,
            )
            d = int(cfg["embed_dim"])
            self.image_proj = nn.Linear(self.image_encoder.out_features, d, bias=False)
            self.text_proj = nn.Linear(self.text_encoder.out_features, d, bias=False)
            pre = single_encoder_preprocessing(cfg, self.image_encoder)
        model_dir = model_dir if model_dir is not None else getattr(tokenizer, "model_dir", None)
        self.preprocessing = sync_preprocessing(pre, model_dir, write=pretrained)
        image = self.preprocessing["image"]
        self.image_size = int(image["size"])
        self.interpolation = str(image.get("interpolation", "bilinear"))
        self.crop_fraction = float(image.get("crop_fraction", 1.0))
        self.logit_scale = nn.Parameter(torch.tensor(float(log_scale)), requires_grad=bool(t["learnable_temperature"]))
        self.register_buffer("pixel_mean", torch.tensor(image["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(image["std"]).view(1, 3, 1, 1), persistent=False)
        self.tokenizer = tokenizer  # not a module: used by encode_texts

    # ------------------------------------------------------------ towers
    def prepare_images(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N,S,S) or (N,1,S,S) -> normalised float (N,3,size,size), on the model's device."""
        if images.dim() == 3:
            images = images.unsqueeze(1)
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"images must be (N,S,S) or (N,1,S,S) uint8, got shape {tuple(images.shape)}")
        if self.crop_fraction < 1.0:  # the model's centre crop (e.g. BioViL: 480 of 512)
            h, w = images.shape[-2:]
            ch, cw = max(1, round(h * self.crop_fraction)), max(1, round(w * self.crop_fraction))
            images = images[..., (h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw]
        x = images.to(self.pixel_mean.device, non_blocking=True).float().div_(255.0)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode=self.interpolation, antialias=True,
                              align_corners=False)
            if self.interpolation == "bicubic":
                x = x.clamp_(0.0, 1.0)
        x = (x.expand(-1, 3, -1, -1) - self.pixel_mean) / self.pixel_std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        z = self.image_proj(self.image_encoder(self.prepare_images(images)))
        return F.normalize(z.float(), dim=-1)

    def text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        dev = self.pixel_mean.device
        z = self.text_proj(self.text_encoder(input_ids.to(dev, non_blocking=True),
                                             attention_mask.to(dev, non_blocking=True)))
        return F.normalize(z.float(), dim=-1)

    def forward(self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        return self.image_features(images), self.text_features(input_ids, attention_mask)

    def scale(self) -> torch.Tensor:
        """exp(logit_scale) clamped at 100 (CLIP)."""
        return self.logit_scale.exp().clamp(max=LOGIT_SCALE_MAX)

    # ------------------------------------------------------------ inference API
    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt",
            return_token_type_ids=False,
        )

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N,S,S) or (N,1,S,S) -> (N,D) L2-normalised float (resized to the training size)."""
        return self.image_features(images)

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """list of N strings -> (N,D) L2-normalised float."""
        tok = self.tokenize(texts)
        return self.text_features(tok["input_ids"], tok["attention_mask"])


def build_model(cfg: dict, tokenizer, pretrained: bool = True, model_dir: str | Path | None = None) -> ClipModel:
    """The experiment's model: single encoders with new projections, or a pretrained pair with its weights.

    `pretrained=False` builds the architecture only (a checkpoint's weights are loaded next). With
    `model_dir`, the preprocessing is written there (pretrained=True) or read from there.
    """
    return ClipModel(cfg, tokenizer, pretrained=pretrained, model_dir=model_dir)


def single_encoder_preprocessing(cfg: dict, image_encoder: nn.Module) -> dict:
    """Single encoders: ImageNet statistics (or a timm model's own) at `train.image_size`, the text tokenizer."""
    own = getattr(image_encoder, "preprocess", {})
    return {
        "image": {"size": int(cfg["train"]["image_size"]), "mean": list(own.get("mean", IMAGENET_MEAN)),
                  "std": list(own.get("std", IMAGENET_STD)), "channels": 3, "interpolation": "bilinear",
                  "crop_fraction": 1.0},
        "text": {"kind": "hf", "tokenizer": cfg["text_encoder"]["name"], "context_length": int(cfg["text_encoder"]
                 ["max_length"]), "padding": "longest"},
    }


def sync_preprocessing(pre: dict, model_dir: str | Path | None, write: bool) -> dict:
    """Write the model's preprocessing to <model_dir>/preprocessing.json (building for training), or read it
    back (loading for embedding): a loaded model preprocesses as the trained one did."""
    if model_dir is None:
        return pre
    path = Path(model_dir) / PREPROCESSING_FILE
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".json.tmp") as tmp:
            tmp.write_text(json.dumps(pre, indent=2, sort_keys=True))
        return pre
    if not path.is_file():
        return pre
    saved = json.loads(path.read_text())
    if saved.get("image") != pre.get("image"):
        log.warning("%s differs from what the model's name gives now (%s): using the recorded one", path, pre["image"])
    return saved


def param_groups(model: ClipModel, cfg: dict) -> list[dict]:
    """Separate learning rates for the image encoder, the text encoder and the heads (+ temperature).

    Frozen parameters are left out; biases and norm weights get no weight decay.
    """
    t = cfg["train"]
    groups = []
    for name, module, lr in (
        ("image", model.image_encoder, t["lr_image"]),
        ("text", model.text_encoder, t["lr_text"]),
        ("head", nn.ModuleList([model.image_proj, model.text_proj]), t["lr_head"]),
    ):
        decay = [p for p in module.parameters() if p.requires_grad and p.dim() > 1]
        no_decay = [p for p in module.parameters() if p.requires_grad and p.dim() <= 1]
        if decay:
            groups.append({"name": name, "params": decay, "lr": lr, "base_lr": lr, "weight_decay": t["weight_decay"]})
        if no_decay:
            groups.append({"name": name + "_no_decay", "params": no_decay, "lr": lr, "base_lr": lr, "weight_decay": 0.0})
    if model.logit_scale.requires_grad:
        groups.append({"name": "logit_scale", "params": [model.logit_scale], "lr": t["lr_head"],
                       "base_lr": t["lr_head"], "weight_decay": 0.0})
    return groups


def apply_freezing(model: ClipModel, cfg: dict) -> None:
    t = cfg["train"]
    if t["freeze_image"]:
        model.image_encoder.requires_grad_(False)
    if t["freeze_text"]:
        model.text_encoder.requires_grad_(False)
    elif t["freeze_text_layers"]:
        layers = model.text_encoder.layers()
        n = t["freeze_text_layers"]
        if n > len(layers):
            raise InputError(f"train.freeze_text_layers={n} but the text encoder has {len(layers)} layers")
        emb = model.text_encoder.embeddings()
        if emb is not None:
            emb.requires_grad_(False)
        for layer in layers[:n]:
            layer.requires_grad_(False)
