"""Encoders by name: locally saved Hugging Face and torchvision weights load through the hub code path;
missing weights fail with a message saying what to download and where."""

from __future__ import annotations

import pytest
import torch

from txtrayalign.train.encoders import build_image_encoder, build_text_encoder, list_image_encoders
from txtrayalign.train.model import ClipModel, apply_freezing
from txtrayalign.train.tokenizer import get_tokenizer, train_wordpiece
from txtrayalign.train.toydata import tiny_experiment


@pytest.fixture(scope="module")
def tiny_hf_folder(tmp_path_factory):
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny_bert")
    tok = train_wordpiece(["small nodule in the left lung", "no pneumothorax"], 60)
    config = BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_registry_lists_the_image_encoders():
    assert {"compact_cnn", "compact_cnn_gn", "resnet18", "resnet50", "efficientnet_b0"} <= set(list_image_encoders())
    with pytest.raises(ValueError, match="unknown image encoder 'vgg'"):
        build_image_encoder("vgg")


@pytest.mark.parametrize("name", ["compact_cnn", "compact_cnn_gn"])
def test_compact_cnn_is_small(name):
    enc = build_image_encoder(name)
    n = sum(p.numel() for p in enc.parameters())
    assert 300_000 < n < 800_000
    assert enc(torch.zeros(2, 3, 32, 32)).shape == (2, enc.out_features)


@pytest.mark.parametrize("name,features", [("efficientnet_b0", 1280), ("resnet50", 2048)])
def test_torchvision_encoders_drop_their_heads(name, features):
    enc = build_image_encoder(name).eval()
    assert enc.out_features == features
    with torch.no_grad():
        assert enc(torch.zeros(1, 3, 32, 32)).shape == (1, features)


def test_local_hugging_face_model_loads_like_a_hub_one(tiny_hf_folder, tmp_path):
    from transformers import BertModel

    cfg = tiny_experiment()
    cfg["text_encoder"].update(name=str(tiny_hf_folder), pooling="cls")
    tok = get_tokenizer(cfg["text_encoder"], tmp_path)
    model = ClipModel(cfg, tok)
    saved = BertModel.from_pretrained(tiny_hf_folder)
    emb = model.text_encoder.model.embeddings.word_embeddings.weight
    assert torch.equal(emb, saved.embeddings.word_embeddings.weight)
    with torch.no_grad():
        z = model.encode_texts(["small nodule", "no pneumothorax in the left lung"])
    assert z.shape == (2, cfg["embed_dim"])
    # freezing the first layer (and the embeddings) of a Hugging Face encoder
    cfg["train"]["freeze_text_layers"] = 1
    apply_freezing(model, cfg)
    layers = model.text_encoder.model.encoder.layer
    assert not any(p.requires_grad for p in layers[0].parameters())
    assert all(p.requires_grad for p in layers[1].parameters())


def test_unavailable_hugging_face_model_says_what_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="hf download .*set text_encoder.name to the local folder.*HF_HUB_CACHE"):
        build_text_encoder("no-such-org/no-such-model-xyz", "cls", None, 64)
    cfg = tiny_experiment()
    cfg["text_encoder"]["name"] = str(tmp_path / "missing_folder")
    with pytest.raises(OSError, match="could not load"):
        get_tokenizer(cfg["text_encoder"], tmp_path)


def test_local_torchvision_state_dict_loads(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(3)
    reference = resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    enc = build_image_encoder("resnet18", str(path))
    assert torch.equal(enc.conv1.weight, reference.conv1.weight)
    assert enc.out_features == 512
    x = torch.randn(2, 3, 32, 32)
    reference.fc = torch.nn.Identity()
    enc.eval()
    reference.eval()
    assert torch.allclose(enc(x), reference(x))
    # a wrapped checkpoint ({"state_dict": {"module." ...}}) loads too
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in reference.state_dict().items()}}, wrapped)
    assert torch.equal(build_image_encoder("resnet18", str(wrapped)).conv1.weight, reference.conv1.weight)


def test_missing_or_mismatched_weight_files_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="weight file for image encoder resnet18 not found"):
        build_image_encoder("resnet18", str(tmp_path / "nope.pth"))
    torch.save(build_image_encoder("compact_cnn").state_dict(), tmp_path / "cnn.pt")
    with pytest.raises(ValueError, match="does not fit the encoder"):
        build_image_encoder("resnet18", str(tmp_path / "cnn.pt"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match=r"ImageNet weights for resnet50 are not in the torch hub cache .*"
                                                r"checkpoints.*download https://"):
        build_image_encoder("resnet50", "imagenet")


def test_imagenet_weights_are_read_from_the_torch_hub_cache(tmp_path, monkeypatch):
    from torchvision.models import ResNet18_Weights, resnet18

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(4)
    reference = resnet18(weights=None)
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference.state_dict(), cache / ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[1])
    enc = build_image_encoder("resnet18", "imagenet")
    assert torch.equal(enc.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)
