"""Pretrained pairs by name: tiny randomly initialised models of each family, saved in their released
layout, load -> embed (compared with the family's own forward) -> fine-tune; the dry-run checks and
the offline errors. Nothing downloads (HF_HUB_OFFLINE=1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from txtrayalign.train import load_model
from txtrayalign.train.encoders import experiment_problems, problems_report
from txtrayalign.train.loop import Inputs, train
from txtrayalign.train.model import PREPROCESSING_FILE, apply_freezing, build_model
from txtrayalign.train.tokenizer import get_tokenizer, train_wordpiece
from txtrayalign.train.toydata import tiny_experiment, write_toy_dataset

TEXTS = ["Small nodule in the left lung.", "No pneumothorax is seen.", "large effusion right"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path_factory):
    from huggingface_hub import constants

    cache = tmp_path_factory.getbasetemp() / "empty_hub_cache"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))  # read at import time by huggingface_hub


def fill_hub_cache(cache, repo: str, revision: str, files: dict) -> None:
    """The Hugging Face cache layout: models--org--name/{refs/<revision>, snapshots/<commit>/<files>}."""
    import shutil

    root = cache / f"models--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / revision).write_text(commit)
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    for name, src in files.items():
        if src is None:
            (snap / name).write_bytes(b"")
        else:
            shutil.copyfile(src, snap / name)


def pair_experiment(name: str, weights: str = "none", **train_settings) -> dict:
    cfg = tiny_experiment(**train_settings)
    cfg["image_encoder"].update(name=name, weights=weights)
    cfg["text_encoder"]["name"] = name
    return cfg


def wordpiece(folder):
    tok = train_wordpiece(TEXTS * 3, 80)
    tok.save_pretrained(folder)
    return tok


# ---------------------------------------------------------------- tiny models in released layouts

OPEN_CLIP_CFG = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32,
                                                 "patch_size": 8},
                 "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


@pytest.fixture(scope="module")
def open_clip_dir(tmp_path_factory):
    import open_clip
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("open_clip_tiny")
    (folder / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": OPEN_CLIP_CFG,
        "preprocess_cfg": {"mean": [0.5, 0.4, 0.3], "std": [0.25, 0.25, 0.25], "interpolation": "bicubic"}}))
    torch.manual_seed(0)
    model = open_clip.CLIP(**OPEN_CLIP_CFG)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder, model.eval()


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    """A tiny CLIPModel and SiglipModel, each saved with save_pretrained, a tokenizer and preprocessor_config."""
    from transformers import CLIPConfig, CLIPModel, SiglipConfig, SiglipModel

    out = {}
    for family, cls, config_cls, mean in (("clip", CLIPModel, CLIPConfig, [0.48, 0.45, 0.40]),
                                          ("siglip", SiglipModel, SiglipConfig, [0.5, 0.5, 0.5])):
        folder = tmp_path_factory.mktemp(f"{family}_tiny")
        tok = wordpiece(folder)
        text = {"vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                "num_attention_heads": 2, "max_position_embeddings": 24}
        if family == "clip":
            text.update(bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id,
                        projection_dim=16)
        vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                  "image_size": 32, "patch_size": 8}
        config = config_cls(text_config=text, vision_config=vision, **({"projection_dim": 16} if family == "clip" else {}))
        torch.manual_seed(1)
        cls(config).save_pretrained(folder)
        (folder / "preprocessor_config.json").write_text(json.dumps(
            {"image_mean": mean, "image_std": [0.26, 0.26, 0.27], "size": {"shortest_edge": 32},
             "crop_size": {"height": 32, "width": 32}, "resample": 3}))
        out[family] = folder
    return out


@pytest.fixture(scope="module")
def biovil_dir(tmp_path_factory):
    """A stand-in for microsoft/BiomedVLP-CXR-BERT-specialized: the repository's file names and key layout
    (CXRBertModel = BertForMaskedLM + cls_projection_head; the BioViL ResNet-50 image weights file)."""
    from transformers import BertConfig, BertForMaskedLM

    from txtrayalign.train.pretrained import BIOVIL_IMAGE_FILE, BioViLImage, CXRBertProjectionHead

    folder = tmp_path_factory.mktemp("cxr_bert_tiny")
    tok = wordpiece(folder)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(2)
    mlm = BertForMaskedLM(config)
    head = CXRBertProjectionHead(32, 8)
    state = dict(mlm.state_dict())
    state.update({f"cls_projection_head.{k}": v for k, v in head.state_dict().items()})
    torch.save(state, folder / "pytorch_model.bin")
    raw = config.to_dict()
    raw.update(model_type="cxr-bert", architectures=["CXRBertModel"], projection_size=8,
               auto_map={"AutoModel": "modeling_cxrbert.CXRBertModel"})
    (folder / "config.json").write_text(json.dumps(raw))
    image = BioViLImage(8)
    with torch.no_grad():
        for p in image.parameters():
            p.normal_(0, 0.02)
    torch.save(image.state_dict(), folder / BIOVIL_IMAGE_FILE)
    return folder, mlm.eval(), head.eval(), image.eval()


# ---------------------------------------------------------------- load -> embed, against each family's own forward


def test_open_clip_folder_embeds_like_open_clip(open_clip_dir, tmp_path):
    import open_clip

    folder, reference = open_clip_dir
    cfg = pair_experiment(f"open_clip:local-dir:{folder}")
    assert experiment_problems({**cfg, "name": "oc"}) == []
    tok = get_tokenizer(cfg["text_encoder"], tmp_path)
    model = build_model(cfg, tok).eval()
    pre = json.loads((tmp_path / PREPROCESSING_FILE).read_text())
    assert pre["image"] == {"size": 32, "mean": [0.5, 0.4, 0.3], "std": [0.25, 0.25, 0.25], "channels": 3,
                            "interpolation": "bicubic", "crop_fraction": 1.0}
    assert pre["text"]["context_length"] == 16 and pre["embed_dim"] == 16
    images = torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8)
    with torch.no_grad():
        x = F.interpolate(images[:, None].float() / 255, size=(32, 32), mode="bicubic", antialias=True).clamp(0, 1)
        x = (x.expand(-1, 3, -1, -1) - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / 0.25
        want_i = F.normalize(reference.encode_image(x), dim=-1)
        want_t = F.normalize(reference.encode_text(open_clip.get_tokenizer(f"local-dir:{folder}")(TEXTS)), dim=-1)
        assert torch.allclose(model.encode_images(images), want_i, atol=1e-5)
        assert torch.allclose(model.encode_texts(TEXTS), want_t, atol=1e-5)
    assert model.scale().item() == pytest.approx(1 / 0.07, rel=1e-4)  # open_clip's initial temperature


def test_open_clip_architecture_with_a_weights_file(open_clip_dir, tmp_path):
    import open_clip

    folder, reference = open_clip_dir
    cfg_path = tmp_path / "TinyTestCLIP.json"
    cfg_path.write_text(json.dumps(OPEN_CLIP_CFG))
    open_clip.add_model_config(cfg_path)
    cfg = pair_experiment("open_clip:TinyTestCLIP", str(folder / "open_clip_model.safetensors"))
    assert experiment_problems({**cfg, "name": "oc"}) == []
    model = build_model(cfg, get_tokenizer(cfg["text_encoder"], tmp_path))
    assert torch.equal(model.text_encoder.body.token_embedding.weight, reference.token_embedding.weight)
    bad = pair_experiment("open_clip:TinyTestCLIP", "laion2b_nope")
    (problem,) = experiment_problems({**bad, "name": "oc"})
    assert problem.startswith("experiments.oc.image_encoder.weights: weights 'laion2b_nope' is neither a pretrained tag")


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_hugging_face_pairs_embed_like_their_model(hf_dirs, family, tmp_path):
    from transformers import AutoTokenizer, CLIPModel, SiglipModel

    folder = hf_dirs[family]
    cfg = pair_experiment(f"{family}:{folder}")
    assert experiment_problems({**cfg, "name": family}) == []
    model = build_model(cfg, get_tokenizer(cfg["text_encoder"], tmp_path)).eval()
    reference = (CLIPModel if family == "clip" else SiglipModel).from_pretrained(folder).eval()
    hf_tok = AutoTokenizer.from_pretrained(folder)
    padding = "longest" if family == "clip" else "max_length"
    tok = hf_tok(TEXTS[:2], padding=padding, max_length=24, truncation=True, return_tensors="pt")
    if family == "siglip":
        assert model.tokenize(TEXTS[:2])["input_ids"].shape == (2, 24)  # SigLIP pools the last position
    images = torch.randint(0, 256, (2, 32, 32), dtype=torch.uint8)
    pre = model.preprocessing["image"]
    x = (images[:, None].float().div(255).expand(-1, 3, -1, -1) - torch.tensor(pre["mean"]).view(1, 3, 1, 1)) \
        / torch.tensor(pre["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        out = reference(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"], pixel_values=x)
        assert torch.allclose(model.encode_images(images), out.image_embeds, atol=1e-5)
        assert torch.allclose(model.encode_texts(TEXTS[:2]), out.text_embeds, atol=1e-5)
    assert model.image_size == 32 and model.interpolation == "bicubic"
    assert model.scale().item() == pytest.approx(min(100.0, reference.logit_scale.exp().item()), rel=1e-4)


def test_cxr_bert_biovil_stand_in_loads_the_released_layout(biovil_dir, tmp_path):
    folder, mlm, head, image = biovil_dir
    cfg = pair_experiment(f"biovil:{folder}")
    assert experiment_problems({**cfg, "name": "bv"}) == []
    model = build_model(cfg, get_tokenizer(cfg["text_encoder"], tmp_path)).eval()
    assert model.preprocessing["image"] == {"size": 480, "mean": [0.0] * 3, "std": [1.0] * 3, "channels": 3,
                                            "interpolation": "bilinear", "crop_fraction": 480 / 512}
    tok = model.tokenize(TEXTS)
    with torch.no_grad():
        hidden = mlm(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"],
                     output_hidden_states=True).hidden_states[-1]
        assert torch.allclose(model.encode_texts(TEXTS), F.normalize(head(hidden[:, 0]), dim=-1), atol=1e-5)
        small = torch.randint(0, 256, (2, 64, 64), dtype=torch.uint8)
        model.image_size = 64  # the real 480 px is slow on CPU; the layout is what is tested here
        crop = small[:, 2:62, 2:62]  # 480/512 of 64 = 60 px centre crop
        x = F.interpolate(crop[:, None].float() / 255, size=(64, 64), mode="bilinear", antialias=True)
        assert torch.allclose(model.encode_images(small), F.normalize(image(x.expand(-1, 3, -1, -1)), dim=-1),
                              atol=1e-5)
    (folder / "biovil_image_resnet50_proj_size_128.pt").rename(folder / "moved.pt")
    try:
        (problem,) = experiment_problems({**cfg, "name": "bv"})
        assert "biovil_image_resnet50_proj_size_128.pt" in problem and problem.startswith("experiments.bv.image_encoder")
    finally:
        (folder / "moved.pt").rename(folder / "biovil_image_resnet50_proj_size_128.pt")


# ---------------------------------------------------------------- single encoders of the study


@pytest.mark.parametrize("kind", ["bert", "distilbert", "roberta"])  # Bio_ClinicalBERT, DistilBERT, DeCLUTR
def test_study_text_encoders_load_pool_and_freeze(kind, tmp_path):
    from transformers import (
        BertConfig,
        BertModel,
        DistilBertConfig,
        DistilBertModel,
        RobertaConfig,
        RobertaModel,
    )

    folder = tmp_path / kind
    tok = wordpiece(folder)
    small = {"vocab_size": len(tok)}
    if kind == "distilbert":
        model = DistilBertModel(DistilBertConfig(dim=16, n_layers=2, n_heads=2, hidden_dim=32, **small))
    elif kind == "roberta":
        model = RobertaModel(RobertaConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                           intermediate_size=32, pad_token_id=tok.pad_token_id, **small))
    else:
        model = BertModel(BertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, **small))
    model.save_pretrained(folder)
    cfg = tiny_experiment(freeze_text_layers=1)
    cfg["text_encoder"].update(name=str(folder), pooling="cls")
    assert experiment_problems({**cfg, "name": kind}) == []
    clip = build_model(cfg, get_tokenizer(cfg["text_encoder"], tmp_path / "out"))
    apply_freezing(clip, cfg)
    layers = clip.text_encoder.layers()
    assert len(layers) == 2
    assert not any(p.requires_grad for p in layers[0].parameters())
    assert all(p.requires_grad for p in layers[1].parameters())
    reference = type(model).from_pretrained(folder).eval()
    clip.eval()
    batch = clip.tokenize(TEXTS)
    assert "token_type_ids" not in batch
    with torch.no_grad():
        want = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state[:, 0]
        assert torch.allclose(clip.text_encoder(batch["input_ids"], batch["attention_mask"]), want, atol=1e-5)
        assert clip.encode_texts(TEXTS).shape == (3, cfg["embed_dim"])


def test_timm_image_encoder_by_name():
    from txtrayalign.train.encoders import build_image_encoder

    enc = build_image_encoder("timm:resnet10t").eval()
    assert enc.out_features == 512
    with torch.no_grad():
        assert enc(torch.zeros(1, 3, 32, 32)).shape == (1, 512)
    (problem,) = experiment_problems({"name": "t", "image_encoder": {"name": "timm:resnet10tt", "weights": "none"},
                                      "text_encoder": {"name": "small_bert"}})
    assert "not a timm model" in problem and "resnet10t" in problem


# ---------------------------------------------------------------- fine-tuning and scoring as they are


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("toy"), studies=40, image_size=32, seed=0)


@pytest.mark.parametrize("which", ["open_clip", "clip"])
def test_fine_tuning_a_pair_moves_it_and_reloads(which, toy, open_clip_dir, hf_dirs, tmp_path):
    name = f"open_clip:local-dir:{open_clip_dir[0]}" if which == "open_clip" else f"clip:{hf_dirs['clip']}"
    cfg = pair_experiment(name, epochs=1, batch_size=8, lr_image=1e-3, lr_text=1e-3, freeze_text_layers=1,
                          distill={"enabled": True, "weight": 0.5, "ema": 0.9})
    out = tmp_path / "run"
    start = build_model(cfg, get_tokenizer(cfg["text_encoder"], tmp_path / "start")).eval()
    summary = train(cfg, Inputs(toy["images_index"], toy["split"], out, toy["sentences"], toy["sections"]),
                    device="cpu", max_steps=3)
    assert summary["steps"] == 3
    model = load_model(out, "cpu", checkpoint="last.pt")
    assert json.loads((out / PREPROCESSING_FILE).read_text())["pair"] == name
    images = torch.randint(0, 256, (2, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        moved = (model.encode_images(images) - start.encode_images(images)).abs().max()
        assert moved > 1e-4  # three optimiser steps changed the image tower
        frozen = model.text_encoder.layers()[0]
        for p, q in zip(frozen.parameters(), start.text_encoder.layers()[0].parameters(), strict=True):
            assert torch.equal(p, q)  # train.freeze_text_layers kept the first block as released


# ---------------------------------------------------------------- names checked in the dry run; offline errors


def test_typos_and_missing_models_are_named_without_network():
    exp = {"name": "demo", "image_encoder": {"name": "resnet19", "weights": "none"},
           "text_encoder": {"name": "smal_bert"}}
    image, text = experiment_problems(exp)
    assert image.startswith("experiments.demo.image_encoder.name: 'resnet19' is not a known image encoder")
    assert "did you mean resnet18" in image
    assert text.startswith("experiments.demo.text_encoder.name: 'smal_bert' is not small_bert")
    assert "HF_HUB_CACHE" in text and "offline" in text
    mixed = {"name": "m", "image_encoder": {"name": "open_clip:RN50", "weights": "openai"},
             "text_encoder": {"name": "small_bert"}}
    (problem,) = experiment_problems(mixed)
    assert problem.startswith("experiments.m.text_encoder.name: a pretrained pair is named on both encoders")


def test_missing_pretrained_models_say_where_to_put_them(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENCLIP_CACHE_DIR", str(tmp_path / "openclip"))
    problems = []
    for exp, (name, weights) in {"rn50": ("open_clip:RN50", "openai"),
                                 "xray": ("clip:org/XrayCLIP-missing", "none"),
                                 "sig": ("siglip:org/XraySigLIP-missing", "none"),
                                 "biovil": ("biovil", "none")}.items():
        problems += experiment_problems({**pair_experiment(name, weights), "name": exp})
    assert len(problems) == 4
    assert problems[0].startswith("experiments.rn50.image_encoder.weights: open_clip weights RN50/openai")
    assert "hf download timm/resnet50_clip.openai" in problems[0] and "OPENCLIP_CACHE_DIR" in problems[0]
    assert "hf download org/XrayCLIP-missing" in problems[1] and "HF_HUB_CACHE" in problems[1]
    assert "microsoft/BiomedVLP-CXR-BERT-specialized --revision v1.1" in problems[3]
    report = problems_report(problems + problems[1:2])
    assert report.startswith("4 problem(s)") and report.count("\n") == 4
    with pytest.raises(FileNotFoundError, match="hf download org/XrayCLIP-missing"):
        build_model(pair_experiment("clip:org/XrayCLIP-missing"), None)


def test_models_in_the_hub_cache_pass_the_dry_run_and_load_offline(biovil_dir, open_clip_dir, tmp_path, monkeypatch):
    """The released names resolve from a (copied) cache: biovil at its pinned revision, RN50's openai weights,
    an open_clip hf-hub: repository (BiomedCLIP's layout)."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    folder = biovil_dir[0]
    fill_hub_cache(cache, "microsoft/BiomedVLP-CXR-BERT-specialized", "v1.1",
                   {p.name: p for p in folder.iterdir() if p.is_file()})
    fill_hub_cache(cache, "timm/resnet50_clip.openai", "main", {"open_clip_model.safetensors": None})
    fill_hub_cache(cache, "org/tiny-openclip", "main", {p.name: p for p in open_clip_dir[0].iterdir()})
    for name, weights in (("biovil", "none"), ("open_clip:RN50", "openai"), ("open_clip:hf-hub:org/tiny-openclip", "none")):
        assert experiment_problems({**pair_experiment(name, weights), "name": "cached"}) == [], name
    cfg = pair_experiment("biovil")
    model = build_model(cfg, get_tokenizer(cfg["text_encoder"], tmp_path / "out"))
    assert model.preprocessing["revision"] == "v1.1" and "0123456789abcdef" in model.preprocessing["folder"]
    assert torch.equal(model.text_encoder.body.embeddings.word_embeddings.weight,
                       biovil_dir[1].bert.embeddings.word_embeddings.weight)
    cfg = pair_experiment("open_clip:hf-hub:org/tiny-openclip")
    model = build_model(cfg, get_tokenizer(cfg["text_encoder"], tmp_path / "oc"))
    assert torch.equal(model.image_encoder.visual.conv1.weight, open_clip_dir[1].visual.conv1.weight)
    assert model.preprocessing["built_from"].startswith("local-dir:") and model.preprocessing["image"]["size"] == 32


@pytest.mark.workflow
def test_dry_run_stops_on_encoder_typos_naming_the_keys(tmp_path):
    """Issue 12: `resnet19` / `smal_bert` stop `snakemake -n` at parse time, before anything runs."""
    import os
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from workflow_helpers import snakemake, tiny_config, write_config

    cfg = tiny_config()
    cfg["experiments"] = {"typo": {"image_encoder": {"name": "resnet19"}, "text_encoder": {"name": "smal_bert"}}}
    res = snakemake(tmp_path, "-n", config=write_config(cfg, tmp_path), timeout=300,
                    env={**os.environ, "HF_HUB_OFFLINE": "1"})
    text = res.stdout + res.stderr
    assert res.returncode != 0
    assert "experiments.typo.image_encoder.name" in text and "did you mean resnet18" in text
    assert "experiments.typo.text_encoder.name" in text and "did you mean small_bert" in text
    assert "Job stats" not in text
