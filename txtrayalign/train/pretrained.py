"""Pretrained image-text pairs by name: open_clip, Hugging Face CLIP / SigLIP, CXR-BERT with BioViL.

A pair is named by `image_encoder.name` and `text_encoder.name` (the same string on both):

| name | family | weights |
|---|---|---|
| `open_clip:<architecture>` (e.g. `open_clip:RN50`) | open_clip built-in | `image_encoder.weights`: a pretrained tag (`openai`, ...), `none` (random) or a checkpoint file |
| `open_clip:hf-hub:<org/repo>` | open_clip on the Hugging Face hub (BiomedCLIP, ...) | from the repository |
| `open_clip:local-dir:<folder>` | an open_clip folder (open_clip_config.json + weights) | from the folder |
| `clip:<org/repo or folder>[@revision]` | transformers `CLIPModel` | from the repository / folder |
| `siglip:<org/repo or folder>[@revision]` | transformers `SiglipModel` | from the repository / folder |
| `biovil` or `biovil:<org/repo or folder>[@revision]` | CXR-BERT text + BioViL ResNet-50 image encoder | `microsoft/BiomedVLP-CXR-BERT-specialized` at revision v1.1 |

Each family builds an image tower (normalised float (N,3,S,S) -> (N,D) in the shared space, the
pair's own projection included), a text tower ((input_ids, attention_mask) -> (N,D), with
`layers()` and `embeddings()` for freezing), a tokenizer callable like a Hugging Face one, the
pair's preprocessing (image size, mean/std, interpolation, centre-crop fraction; context length
and padding) and its temperature. Nothing is downloaded when offline (HF_HUB_OFFLINE or
TXTRAYALIGN_OFFLINE): a model that is not in a local folder or cache fails at once with a message
naming it, the folder to put it in and the environment variable that points at a cache.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from txtrayalign.errors import InputError
from txtrayalign.train.names import (
    BIOVIL_IMAGE_FILE,
    CXR_BERT_ID,
    CXR_BERT_REVISION,
    FAMILIES,
    OPEN_CLIP_WEIGHT_FILES,
    PairSpec,
    cached_file,
    is_pair,  # noqa: F401  (re-exported: model.py and tokenizer.py import it from here)
    missing_message,
    offline,
    open_clip_problem,
    openclip_cache_dir,
    pair_problem,
    parse_pair,
)

log = logging.getLogger(__name__)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
HF_FILES = ["*.json", "*.txt", "*.model", "*.safetensors", "*.bin", "*.pt"]  # no TF/Flax/ONNX copies


def resolve_folder(repo: str, revision: str | None, display: str, patterns: list[str] | None = None) -> Path:
    """A local folder holding the repository: the folder itself, the cached snapshot, or a download (online)."""
    p = Path(repo).expanduser()
    if p.is_dir():
        return p
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, revision=revision, local_files_only=offline(),
                                      allow_patterns=patterns or HF_FILES))
    except Exception as e:
        raise FileNotFoundError(f"{missing_message(display, repo, revision)} ({type(e).__name__}: {e})") from e


@dataclass
class Pair:
    image_tower: nn.Module
    text_tower: nn.Module
    tokenizer: PairTokenizer
    preprocessing: dict
    logit_scale: float  # log of the pair's inverse temperature
    source: dict = field(default_factory=dict)


class PairTokenizer:
    """The pair's own tokenizer, called like a Hugging Face one; the pair's context length and padding win.

    `kind` is "hf" (a transformers tokenizer) or "open_clip" (open_clip's tokenizer, padded to its
    context length, which its text transformer requires).
    """

    def __init__(self, inner, kind: str, context_length: int, padding: str, pad_id: int = 0) -> None:
        self.inner, self.kind, self.context_length, self.padding, self.pad_id = inner, kind, context_length, padding, pad_id
        self.model_dir: Path | None = None  # where the model's preprocessing.json lives (set by get_tokenizer)

    def __call__(self, texts, padding=True, truncation=True, max_length=None, return_tensors="pt",
                 return_token_type_ids=False, **_) -> dict[str, torch.Tensor]:
        texts = list(texts)
        if self.kind == "open_clip":
            ids = self.inner(texts, context_length=self.context_length)
            return {"input_ids": ids, "attention_mask": (ids != self.pad_id).long()}
        tok = self.inner(texts, padding=self.padding, truncation=True, max_length=self.context_length,
                         return_tensors="pt")
        return {"input_ids": tok["input_ids"], "attention_mask": tok["attention_mask"]}

    def describe(self) -> dict:
        return {"kind": self.kind, "class": type(self.inner).__name__, "context_length": self.context_length,
                "padding": self.padding}


def find_layers(module: nn.Module, paths: tuple[str, ...]) -> list[nn.Module]:
    """The first of `paths` (dotted attribute paths) that exists in `module`, as a list of blocks."""
    for path in paths:
        obj = module
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
            return list(obj)
        except (AttributeError, TypeError):
            continue
    raise ValueError(f"cannot find the transformer layers of {type(module).__name__} to freeze")


LAYER_PATHS = ("encoder.layer", "transformer.layer", "encoder.layers", "layers", "transformer.resblocks",
               "transformer.encoder.layer", "transformer.encoder.layers", "bert.encoder.layer",
               "text_model.encoder.layers")


class _Text(nn.Module):
    """Base of the text towers: freezing helpers over `self.body`."""

    body: nn.Module

    def layers(self) -> list[nn.Module]:
        return find_layers(self.body, LAYER_PATHS)

    def embeddings(self) -> nn.Module | None:
        for path in ("embeddings", "transformer.embeddings", "bert.embeddings", "token_embedding"):
            obj = self.body
            try:
                for part in path.split("."):
                    obj = getattr(obj, part)
                return obj
            except AttributeError:
                continue
        return None


def _image_output_dim(tower: nn.Module, size: int) -> int:
    with torch.no_grad():
        was = tower.training
        tower.eval()
        d = int(tower(torch.zeros(1, 3, size, size)).shape[-1])
        tower.train(was)
    return d


# ---------------------------------------------------------------- open_clip


class OpenClipBuiltinText(nn.Module):
    """open_clip's own text transformer (CLIP.encode_text), taken out of the CLIP module."""

    def __init__(self, model) -> None:
        super().__init__()
        self.transformer = model.transformer
        self.token_embedding = model.token_embedding
        self.positional_embedding = model.positional_embedding
        self.ln_final = model.ln_final
        self.text_projection = model.text_projection
        self.pool_type = model.text_pool_type
        self.eos_id = getattr(model, "text_eos_id", None)
        self.register_buffer("attn_mask", model.attn_mask, persistent=False)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        from open_clip.transformer import text_global_pool

        cast = self.transformer.get_cast_dtype()
        x = self.token_embedding(text).to(cast) + self.positional_embedding[: text.shape[1]].to(cast)
        mask = None if self.attn_mask is None else self.attn_mask[: text.shape[1], : text.shape[1]]
        x = self.ln_final(self.transformer(x, attn_mask=mask))
        x = text_global_pool(x, text, self.pool_type, eos_token_id=self.eos_id)
        if self.text_projection is None:
            return x
        return self.text_projection(x) if isinstance(self.text_projection, nn.Linear) else x @ self.text_projection


class OpenClipText(_Text):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.body(input_ids)


class OpenClipImage(nn.Module):
    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.visual(x)
        return out[0] if isinstance(out, tuple) else out


def local_open_clip_ident(spec: PairSpec) -> str:
    """The open_clip model id to build from: offline, an hf-hub: id becomes the cached snapshot (local-dir:)."""
    if spec.ident.startswith("hf-hub:") and offline():
        repo = spec.ident[len("hf-hub:"):]
        return f"local-dir:{resolve_folder(repo, None, spec.name)}"
    return spec.ident


def _open_clip_tokenizer(ident: str) -> PairTokenizer:
    """open_clip's tokenizer for the model, padded to its context length (its text transformer needs it)."""
    import open_clip

    tok = open_clip.get_tokenizer(ident, cache_dir=openclip_cache_dir())
    context = int(getattr(tok, "context_length", None) or 77)
    return PairTokenizer(tok, "open_clip", context, "max_length", int(getattr(tok, "pad_token_id", 0) or 0))


def build_open_clip(spec: PairSpec, weights: str, pretrained: bool) -> Pair:
    import open_clip

    problem = open_clip_problem(spec, weights) if pretrained else None
    if problem:
        raise FileNotFoundError(f"{spec.name}: {problem}")
    ident = local_open_clip_ident(spec)
    tag = None if weights in ("none", None) or ident.startswith(("hf-hub:", "local-dir:")) else str(weights)
    tag_cfg = {}
    if tag and Path(tag).expanduser().is_file():
        tag = str(Path(tag).expanduser())
    elif tag:
        tag_cfg = open_clip.get_pretrained_cfg(ident, tag)
        repo = (tag_cfg.get("hf_hub") or "").strip("/")
        cached = [c for f in OPEN_CLIP_WEIGHT_FILES if repo and (c := cached_file(repo, f, cache_dir=openclip_cache_dir()))]
        if pretrained and cached:  # the cached file itself: open_clip never asks the network
            tag = cached[0]
    try:
        # a tag trained with QuickGELU (OpenAI's) gets it, as open_clip's `-quickgelu` configs do
        model = open_clip.create_model(ident, pretrained=tag if pretrained else None, load_weights=pretrained,
                                       cache_dir=openclip_cache_dir(), force_quick_gelu=bool(tag_cfg.get("quick_gelu")))
        tok = _open_clip_tokenizer(ident)
    except Exception as e:
        repo = ident[len("hf-hub:"):] if ident.startswith("hf-hub:") else None
        hint = missing_message(spec.name, repo) if repo else "see the README's pretrained models section"
        raise FileNotFoundError(f"could not build open_clip model {ident} ({type(e).__name__}: {e}); {hint}") from e
    pp = dict(getattr(model.visual, "preprocess_cfg", {}) or {})
    pp.update({k: v for k, v in tag_cfg.items() if k in ("mean", "std", "interpolation", "resize_mode")})
    size = pp.get("size", getattr(model.visual, "image_size", 224))
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    text_body = model.text if hasattr(model, "text") else OpenClipBuiltinText(model)
    image = OpenClipImage(model.visual)
    logit = float(model.logit_scale.detach()) if hasattr(model, "logit_scale") else math.log(1 / 0.07)
    pre = {
        "image": {"size": size, "mean": list(pp.get("mean", OPENAI_MEAN)), "std": list(pp.get("std", OPENAI_STD)),
                  "channels": 3, "interpolation": pp.get("interpolation", "bicubic"), "crop_fraction": 1.0},
        "text": tok.describe(),
    }
    return Pair(image, OpenClipText(text_body), tok, pre, logit,
                {"family": "open_clip", "model": spec.ident, "weights": str(weights), "built_from": ident,
                 "checkpoint": tag if pretrained else None})


# ---------------------------------------------------------------- Hugging Face CLIP and SigLIP


class HFImage(nn.Module):
    def __init__(self, vision_model: nn.Module, projection: nn.Module | None) -> None:
        super().__init__()
        self.vision_model = vision_model
        self.projection = projection if projection is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.vision_model(pixel_values=x).pooler_output)


class HFText(_Text):
    def __init__(self, text_model: nn.Module, projection: nn.Module | None) -> None:
        super().__init__()
        self.body = text_model
        self.projection = projection if projection is not None else nn.Identity()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.projection(self.body(input_ids=input_ids, attention_mask=attention_mask).pooler_output)


def _image_processor_settings(folder: Path, default_size: int, default_mean, default_std) -> dict:
    """Size, mean/std and resampling from preprocessor_config.json (read as data, no image processor class)."""
    path = folder / "preprocessor_config.json"
    cfg = json.loads(path.read_text()) if path.is_file() else {}

    def side(v):
        if isinstance(v, dict):
            return v.get("shortest_edge") or v.get("height")
        return v

    crop, size = side(cfg.get("crop_size")), side(cfg.get("size"))
    out = int(crop or size or default_size)
    resample = {2: "bilinear", 3: "bicubic"}.get(cfg.get("resample"), "bicubic")
    fraction = 1.0
    if cfg.get("do_center_crop", crop is not None) and crop and size and int(size) > int(crop):
        fraction = int(crop) / int(size)
    return {"size": out, "mean": list(cfg.get("image_mean", default_mean)), "std": list(cfg.get("image_std", default_std)),
            "channels": 3, "interpolation": resample, "crop_fraction": fraction}


def _hf_pair_tokenizer(spec: PairSpec, folder: Path) -> PairTokenizer:
    """CLIP: padded to the batch's longest text (it pools the end-of-text token); SigLIP pools the last
    position, so its texts are padded to the length it was trained with; CXR-BERT: [CLS], longest."""
    from transformers import AutoConfig, AutoTokenizer, BertTokenizerFast

    if spec.family == "biovil":
        raw = json.loads((folder / "config.json").read_text())
        return PairTokenizer(BertTokenizerFast.from_pretrained(folder),
                             "hf", min(int(raw.get("max_position_embeddings", 512)), 512), "longest")
    config = AutoConfig.from_pretrained(folder)
    padding = "max_length" if spec.family == "siglip" else "longest"
    return PairTokenizer(AutoTokenizer.from_pretrained(folder), "hf", int(config.text_config.max_position_embeddings),
                         padding)


def build_hf_pair(spec: PairSpec, pretrained: bool) -> Pair:
    from transformers import AutoConfig, CLIPModel, SiglipModel

    folder = resolve_folder(spec.ident, spec.revision, spec.name)
    cls, model_type = (CLIPModel, "clip") if spec.family == "clip" else (SiglipModel, "siglip")
    config = AutoConfig.from_pretrained(folder)
    if config.model_type != model_type:
        raise InputError(f"{spec.name}: {folder} holds a '{config.model_type}' model, not {model_type} "
                         f"(name it {config.model_type}:{spec.ident} if that family is supported)")
    model = cls.from_pretrained(folder) if pretrained else cls(config)
    tok = _hf_pair_tokenizer(spec, folder)
    vision_size = int(config.vision_config.image_size)
    if spec.family == "clip":
        pre_image = _image_processor_settings(folder, vision_size, OPENAI_MEAN, OPENAI_STD)
        image = HFImage(model.vision_model, model.visual_projection)
        text = HFText(model.text_model, model.text_projection)
    else:
        pre_image = _image_processor_settings(folder, vision_size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
        image, text = HFImage(model.vision_model, None), HFText(model.text_model, None)
    pre_image["size"] = vision_size  # position embeddings fix the input size
    return Pair(image, text, tok, {"image": pre_image, "text": tok.describe()}, float(model.logit_scale.detach()),
                {"family": spec.family, "model": spec.ident, "revision": spec.revision, "folder": str(folder)})


# ---------------------------------------------------------------- CXR-BERT + BioViL


class BioViLImage(nn.Module):
    """The BioViL image model's layout (hi-ml-multimodal ImageModel): `encoder.encoder` a torchvision
    ResNet-50, `projector.model` = 1x1 conv, BatchNorm, ReLU, 1x1 conv; the global embedding is the
    spatial mean of the projected patch embeddings."""

    def __init__(self, joint_size: int = 128) -> None:
        super().__init__()
        from torchvision.models import resnet50

        self.encoder = nn.Module()
        self.encoder.encoder = resnet50(weights=None)
        self.projector = nn.Module()
        self.projector.model = nn.Sequential(
            nn.Conv2d(2048, joint_size, 1, bias=False), nn.BatchNorm2d(joint_size), nn.ReLU(inplace=True),
            nn.Conv2d(joint_size, joint_size, 1, bias=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.encoder.encoder
        x = r.maxpool(r.relu(r.bn1(r.conv1(x))))
        x = r.layer4(r.layer3(r.layer2(r.layer1(x))))
        return self.projector.model(x).mean(dim=(2, 3))


class CXRBertProjectionHead(nn.Module):
    """CXR-BERT's `cls_projection_head`: dense, GELU, LayerNorm, dense on the [CLS] state."""

    def __init__(self, hidden: int, projection: int) -> None:
        super().__init__()
        self.dense_to_hidden = nn.Linear(hidden, projection)
        self.LayerNorm = nn.LayerNorm(projection, eps=1e-12)
        self.dense_to_output = nn.Linear(projection, projection)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense_to_output(self.LayerNorm(nn.functional.gelu(self.dense_to_hidden(x))))


class CXRBertText(_Text):
    """CXR-BERT's text path (`get_projected_text_embeddings`): BERT, [CLS], projection head.

    Loaded from the repository's weights into transformers' own BertModel, so the repository's
    remote code is never executed."""

    def __init__(self, config) -> None:
        super().__init__()
        from transformers import BertModel

        self.body = BertModel(config, add_pooling_layer=False)
        self.cls_projection_head = CXRBertProjectionHead(config.hidden_size, int(config.projection_size))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.cls_projection_head(hidden[:, 0])


def _read_state(folder: Path, names: tuple[str, ...]) -> dict:
    for name in names:
        p = folder / name
        if p.is_file():
            if p.suffix == ".safetensors":
                from safetensors.torch import load_file

                return load_file(str(p))
            return torch.load(p, map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{folder} has none of {list(names)}")


def _load_exact(module: nn.Module, state: dict, source: str) -> None:
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InputError(f"{source} does not fit: {len(missing)} missing key(s) (e.g. {missing[:3]}), "
                         f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")


def build_biovil(spec: PairSpec, pretrained: bool) -> Pair:
    from transformers import BertConfig

    folder = resolve_folder(spec.ident, spec.revision, spec.name)
    raw = json.loads((folder / "config.json").read_text())
    raw = {k: v for k, v in raw.items() if k not in ("model_type", "auto_map", "architectures", "transformers_version")}
    config = BertConfig(**raw)
    config.projection_size = int(raw.get("projection_size", 128))
    text = CXRBertText(config)
    image = BioViLImage(config.projection_size)
    if pretrained:
        state = _read_state(folder, ("model.safetensors", "pytorch_model.bin"))
        bert = {k[len("bert."):]: v for k, v in state.items() if k.startswith("bert.")}
        bert = {k: v for k, v in bert.items() if not k.startswith("pooler.") and "position_ids" not in k}
        _load_exact(text.body, bert, f"{folder} (bert.*)")
        head = {k[len("cls_projection_head."):]: v for k, v in state.items() if k.startswith("cls_projection_head.")}
        _load_exact(text.cls_projection_head, head, f"{folder} (cls_projection_head.*)")
        image_file = folder / BIOVIL_IMAGE_FILE
        if not image_file.is_file():
            raise FileNotFoundError(f"{spec.name}: {image_file} is missing; "
                                    + missing_message(spec.name, CXR_BERT_ID, CXR_BERT_REVISION))
        _load_exact(image, torch.load(image_file, map_location="cpu", weights_only=True), str(image_file))
    tok = _hf_pair_tokenizer(spec, folder)
    # hi-ml-multimodal's inference transform: Resize(512) then CenterCrop(480), [0,1] pixels, 3 channels
    pre = {"image": {"size": 480, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "channels": 3,
                     "interpolation": "bilinear", "crop_fraction": 480 / 512},
           "text": tok.describe()}
    return Pair(image, text, tok, pre, math.log(1 / 0.5),
                {"family": "biovil", "model": spec.ident, "revision": spec.revision, "folder": str(folder)})


def build_pair(name: str, weights: str = "none", pretrained: bool = True) -> Pair:
    """The pair `name` denotes, with its released weights (`pretrained=False`: the architecture only)."""
    spec = parse_pair(name)
    if spec is None:
        raise InputError(f"'{name}' is not a pretrained pair name ({', '.join(f + ':' for f in FAMILIES)} or biovil)")
    if spec.family == "open_clip":
        pair = build_open_clip(spec, weights, pretrained)
    else:
        if pretrained:
            problem = pair_problem(spec, weights)
            if problem:
                raise FileNotFoundError(f"{spec.name}: {problem}")
        pair = build_hf_pair(spec, pretrained) if spec.family in ("clip", "siglip") else build_biovil(spec, pretrained)
    pair.preprocessing = {"pair": name, **pair.source, **pair.preprocessing,
                          "embed_dim": _image_output_dim(pair.image_tower, 32 if spec.family == "biovil" else
                                                         pair.preprocessing["image"]["size"])}
    log.info("pretrained pair %s: %s", name, pair.preprocessing)
    return pair


def pair_tokenizer(name: str) -> PairTokenizer:
    """The tokenizer of pair `name` alone (no weights loaded)."""
    spec = parse_pair(name)
    if spec is None:
        raise InputError(f"'{name}' is not a pretrained pair name")
    if spec.family == "open_clip":
        return _open_clip_tokenizer(local_open_clip_ident(spec))
    return _hf_pair_tokenizer(spec, resolve_folder(spec.ident, spec.revision, spec.name))
