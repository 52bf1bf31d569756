"""Encoder names and every check of them that needs no data, without importing torch.

The registries' names (`IMAGE_ENCODER_NAMES`, the pretrained pair families of `parse_pair`, `timm:`,
Hugging Face ids) and `experiment_problems`, which the workflow runs while it parses the Snakefile:
the dry run must not pay for torch, transformers, open_clip or timm. Those are imported only to check
a name of their own (`timm:…`, `open_clip:<architecture>`), inside the function that checks it. Building
the encoders lives in `txtrayalign.train.encoders` and `txtrayalign.train.pretrained`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CXR_BERT_ID = "microsoft/BiomedVLP-CXR-BERT-specialized"
CXR_BERT_REVISION = "v1.1"  # the tag hi-ml-multimodal pins
BIOVIL_IMAGE_FILE = "biovil_image_resnet50_proj_size_128.pt"
FAMILIES = ("open_clip", "clip", "siglip", "biovil")
OPEN_CLIP_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def offline() -> bool:
    """HF_HUB_OFFLINE (or TXTRAYALIGN_OFFLINE) set: use only local files and caches, never the network."""
    return any(os.environ.get(v, "") not in ("", "0", "false", "False") for v in ("HF_HUB_OFFLINE", "TXTRAYALIGN_OFFLINE"))


# ---------------------------------------------------------------- names


@dataclass(frozen=True)
class PairSpec:
    family: str  # one of FAMILIES
    ident: str  # architecture, hf-hub:/local-dir: id, hub id or folder
    revision: str | None = None

    @property
    def name(self) -> str:
        rev = f"@{self.revision}" if self.revision and self.family != "open_clip" else ""
        return f"{self.family}:{self.ident}{rev}"

    def folder(self) -> Path | None:
        """The local folder this spec names, if it names one."""
        ident = self.ident[len("local-dir:"):] if self.ident.startswith("local-dir:") else self.ident
        p = Path(ident).expanduser()
        return p if p.is_dir() else None


def parse_pair(name: object) -> PairSpec | None:
    """The pair a name denotes, or None when it is not a pair name (a single encoder)."""
    if not isinstance(name, str):
        return None
    if name == "biovil":
        return PairSpec("biovil", CXR_BERT_ID, CXR_BERT_REVISION)
    family, sep, ident = name.partition(":")
    if not sep or family not in FAMILIES:
        return None
    revision = None
    if family != "open_clip" and "@" in ident and not Path(ident).expanduser().exists():
        ident, revision = ident.rsplit("@", 1)
    if family == "biovil" and ident == CXR_BERT_ID and revision is None:
        revision = CXR_BERT_REVISION
    return PairSpec(family, ident, revision)


def is_pair(name: object) -> bool:
    return parse_pair(name) is not None


# ---------------------------------------------------------------- where the weights are


def hub_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def openclip_cache_dir() -> str | None:
    """OPENCLIP_CACHE_DIR: open_clip's download folder (None = the HF hub cache, ~/.cache/clip for URLs)."""
    return os.environ.get("OPENCLIP_CACHE_DIR") or None


def missing_message(model: str, repo: str | None, revision: str | None = None, files: str = "") -> str:
    """What to do about a model that is neither a local folder nor in the local cache."""
    rev = f" --revision {revision}" if revision else ""
    fetch = (f"on a machine with internet run `hf download {repo}{rev}{files}` (it fills the hub cache "
             f"{hub_cache()}; point HF_HOME or HF_HUB_CACHE at a copied cache) or download it into a folder "
             f"(`hf download {repo}{rev} --local-dir models/hf/{Path(repo).name}`) and name that folder")
    return f"pretrained model '{model}' is not in a local folder or the local Hugging Face cache: {fetch}"


def cached_file(repo: str, filename: str, revision: str | None = None, cache_dir: str | None = None) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(repo, filename, revision=revision, cache_dir=cache_dir)
    return path if isinstance(path, str) else None


_HUB_CHECKS: dict[tuple[str, str | None], str | None] = {}


def hub_problem(repo: str, revision: str | None = None) -> str | None:
    """Online only: None when the hub knows `repo`, else why not (one request, no retries, memoised)."""
    key = (repo, revision)
    if key not in _HUB_CHECKS:
        from huggingface_hub import HfApi
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

        try:
            HfApi().model_info(repo, revision=revision, timeout=10)
            _HUB_CHECKS[key] = None
        except RepositoryNotFoundError:
            _HUB_CHECKS[key] = f"there is no model '{repo}' on the Hugging Face hub (or it is private)"
        except RevisionNotFoundError:
            _HUB_CHECKS[key] = f"the Hugging Face model '{repo}' has no revision '{revision}'"
        except Exception as e:  # no network: the model cannot be fetched either
            _HUB_CHECKS[key] = f"the Hugging Face hub cannot be reached to fetch '{repo}' ({type(e).__name__})"
    return _HUB_CHECKS[key]


def hf_available(repo: str, revision: str | None, marker: str, display: str) -> str | None:
    """None when hub model `repo` is a folder, in the cache, or (online) on the hub; else the problem."""
    if Path(repo).expanduser().is_dir():
        if not (Path(repo).expanduser() / marker).is_file():
            return f"folder {repo} has no {marker}: it is not a saved {display} model"
        return None
    if cached_file(repo, marker, revision) is not None:
        return None
    if offline():
        return missing_message(display, repo, revision) + " [offline: HF_HUB_OFFLINE/TXTRAYALIGN_OFFLINE is set]"
    problem = hub_problem(repo, revision)
    return None if problem is None else f"{problem}; " + missing_message(display, repo, revision)


def open_clip_problem(spec: PairSpec, weights: str) -> str | None:
    """Everything wrong with an open_clip name and weights that shows without building the model."""
    import open_clip

    ident = spec.ident
    if ident.startswith("local-dir:"):
        folder = spec.folder()
        if folder is None or not (folder / "open_clip_config.json").is_file():
            return f"'{ident}' is not a folder with an open_clip_config.json"
        return None if weights in ("none", None) else "weights must be 'none': a local-dir model has its own"
    if ident.startswith("hf-hub:"):
        if weights not in ("none", None):
            return "weights must be 'none' for an hf-hub: model (its weights come with the repository)"
        repo = ident[len("hf-hub:"):]
        problem = hf_available(repo, None, "open_clip_config.json", spec.name)
        if problem is None and not Path(repo).is_dir() and not any(
                cached_file(repo, f, cache_dir=openclip_cache_dir()) or cached_file(repo, f)
                for f in OPEN_CLIP_WEIGHT_FILES) and offline():
            problem = missing_message(spec.name, repo) + " [its weights file is missing from the cache]"
        return problem
    if ident not in open_clip.list_models():
        from difflib import get_close_matches

        near = get_close_matches(ident, open_clip.list_models(), n=3)
        return (f"'{ident}' is not an open_clip architecture" + (f" (did you mean {near}?)" if near else "")
                + "; `python -c 'import open_clip; print(open_clip.list_models())'` lists them")
    if weights in ("none", None):
        return None
    if Path(str(weights)).expanduser().is_file():
        return None
    tags = open_clip.list_pretrained_tags_by_model(ident)
    if weights not in tags:
        return f"weights '{weights}' is neither a pretrained tag of open_clip {ident} ({tags}) nor a checkpoint file"
    cfg = open_clip.get_pretrained_cfg(ident, weights)
    repo = (cfg.get("hf_hub") or "").strip("/")
    if repo:
        if any(cached_file(repo, f, cache_dir=openclip_cache_dir()) for f in OPEN_CLIP_WEIGHT_FILES):
            return None
        if offline():
            where = openclip_cache_dir() or hub_cache()
            return (f"open_clip weights {ident}/{weights} are not in the cache {where}: on a machine with internet "
                    f"run `hf download {repo} open_clip_model.safetensors` (HF_HOME / HF_HUB_CACHE point at the "
                    f"cache; OPENCLIP_CACHE_DIR at another folder) [offline: HF_HUB_OFFLINE is set]")
        problem = hub_problem(repo)
        return None if problem is None else (
            f"open_clip weights {ident}/{weights} cannot be fetched ({problem}): on a machine with internet run "
            f"`hf download {repo} open_clip_model.safetensors` and copy the cache (HF_HOME / HF_HUB_CACHE)")
    target = Path(openclip_cache_dir() or "~/.cache/clip").expanduser() / os.path.basename(cfg.get("url", ""))
    if not target.is_file() and offline():
        return (f"open_clip weights {ident}/{weights} are not in {target}: download {cfg.get('url')} there "
                f"(OPENCLIP_CACHE_DIR sets the folder) [offline: HF_HUB_OFFLINE is set]")
    return None


def pair_problem(spec: PairSpec, weights: str) -> str | None:
    """The problem with a pair's name/weights that shows without loading it, or None."""
    if spec.family == "open_clip":
        return open_clip_problem(spec, weights)
    if weights not in ("none", None):
        return f"weights must be 'none' for {spec.name}: its weights come with the repository or folder"
    if spec.family == "biovil":
        problem = hf_available(spec.ident, spec.revision, "config.json", spec.name)
        folder = spec.folder()
        if problem is None and folder is not None and not (folder / BIOVIL_IMAGE_FILE).is_file():
            problem = f"folder {folder} has no {BIOVIL_IMAGE_FILE} (the BioViL image weights of {CXR_BERT_ID})"
        if problem is None and folder is None and offline() and cached_file(
                spec.ident, BIOVIL_IMAGE_FILE, spec.revision) is None:
            problem = missing_message(spec.name, spec.ident, spec.revision) + f" [{BIOVIL_IMAGE_FILE} is missing]"
        return problem
    return hf_available(spec.ident, spec.revision, "config.json", spec.name)


# ---------------------------------------------------------------- the loaded pair


# ---------------------------------------------------------------- single encoders

# The image encoders `txtrayalign.train.encoders` registers (it refuses to register any other name).
IMAGE_ENCODER_NAMES = ("compact_cnn", "compact_cnn_gn", "efficientnet_b0", "resnet18", "resnet50")
# torchvision's ImageNet weights of those that have them (ResNet18_Weights.IMAGENET1K_V1,
# ResNet50_Weights.IMAGENET1K_V2, EfficientNet_B0_Weights.IMAGENET1K_V1): torch hub names the cached
# file after the URL. tests/test_dryrun_checks.py holds them against torchvision's own.
IMAGENET_URLS = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
    "efficientnet_b0": "https://download.pytorch.org/models/efficientnet_b0_rwightman-7f5810bc.pth",
}
PAIR_NAMES = ("open_clip:<architecture>", "open_clip:hf-hub:<org/repo>", "open_clip:local-dir:<folder>",
              "clip:<org/repo or folder>", "siglip:<org/repo or folder>", "biovil")
TIMM_PREFIX = "timm:"
WEIGHT_PROBLEMS = ("weights", "image_encoder.weights", "ImageNet weights", "open_clip weights")  # key: .weights


def list_image_encoders() -> list[str]:
    return sorted(IMAGE_ENCODER_NAMES)


def list_text_encoders() -> list[str]:
    return ["small_bert", "<Hugging Face hub name or local folder>"]


def torch_hub_checkpoint(url: str) -> Path:
    """Where torch hub keeps the file of `url`: $TORCH_HOME/hub/checkpoints (TORCH_HOME defaults to
    $XDG_CACHE_HOME/torch, that to ~/.cache), as `torch.hub.get_dir()` computes it."""
    home = os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return Path(home).expanduser() / "hub" / "checkpoints" / os.path.basename(url)


def _near(name: str, known: list[str]) -> str:
    from difflib import get_close_matches

    near = get_close_matches(name, known, n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(near)}?)" if near else ""


def image_encoder_problem(name: object, weights: object) -> str | None:
    """Why image encoder `name` with `weights` cannot be built (checked without building it), or None."""
    if not isinstance(name, str):
        return f"must be a string, got {name!r}"
    spec = parse_pair(name)
    if spec is not None:
        return pair_problem(spec, weights)
    if name.startswith(TIMM_PREFIX):
        return timm_problem(name[len(TIMM_PREFIX):], weights)
    if name not in IMAGE_ENCODER_NAMES:
        return (f"'{name}' is not a known image encoder{_near(name, list_image_encoders())}; known: "
                f"{', '.join(list_image_encoders())}, timm:<name>, or a pretrained pair: {', '.join(PAIR_NAMES)}")
    if weights in ("none", None):
        return None
    if weights == "imagenet":
        url = IMAGENET_URLS.get(name)
        if url is None:
            return f"weights 'imagenet': {name} has none (image_encoder.weights: none or a state dict file)"
        cached = torch_hub_checkpoint(url)
        if offline() and not cached.is_file():
            return (f"ImageNet weights for {name} are not in the torch hub cache {cached}: download {url} to "
                    "that path (TORCH_HOME sets the cache) [offline: HF_HUB_OFFLINE is set]")
        return None
    if not Path(str(weights)).expanduser().is_file():
        return f"image_encoder.weights {weights!r} is not 'none', 'imagenet' or an existing state dict file"
    return None


def timm_problem(name: str, weights: object) -> str | None:
    """Why timm model `name` with `weights` cannot be built, or None (imports timm: only for a timm: name)."""
    import timm

    if not timm.is_model(name):
        return f"'{name}' is not a timm model{_near(name, timm.list_models())}; `timm.list_models()` lists them"
    if weights in ("none", None) or (weights != "imagenet" and Path(str(weights)).expanduser().is_file()):
        return None
    if weights != "imagenet":
        return f"image_encoder.weights {weights!r} is not 'none', 'imagenet' or an existing state dict file"
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo:
        return f"weights 'imagenet': timm model {name} has no pretrained weights on the Hugging Face hub"
    return hf_available(repo, None, "config.json", f"timm:{name}")


def text_encoder_problem(name: object) -> str | None:
    """Why text encoder `name` cannot be loaded (checked without loading it: local folder, cache, hub), or None."""
    if not isinstance(name, str) or not name:
        return f"must be a non-empty string, got {name!r}"
    if name == "small_bert":
        return None
    spec = parse_pair(name)
    if spec is not None:
        return None  # checked with the image encoder's name, which must be the same
    problem = hf_available(name, None, "config.json", name)
    if problem is None:
        return None
    near = _near(name, ["small_bert"])
    return f"'{name}' is not small_bert{near}, and {problem}" if near else problem


def experiment_problems(exp: dict) -> list[str]:
    """Everything wrong with one resolved experiment's encoder settings that shows without data.

    Unknown names, pair names that differ between the two towers, weights files that do not exist,
    Hugging Face names that are neither a local folder nor in the local cache when offline (online:
    not on the hub, one request without retries). Each message names the key `experiments.<name>.…`.
    """
    where = f"experiments.{exp.get('name') or '<name>'}"
    image, text = dict(exp.get("image_encoder") or {}), dict(exp.get("text_encoder") or {})
    iname, tname, weights = image.get("name"), text.get("name"), image.get("weights", "none")
    problems = []
    if is_pair(iname) or is_pair(tname):
        if iname != tname:
            problems.append(
                f"{where}.text_encoder.name: a pretrained pair is named on both encoders alike; got "
                f"image_encoder.name {iname!r} and text_encoder.name {tname!r}")
            return problems
    problem = image_encoder_problem(iname, weights)
    if problem:
        key = "weights" if problem.startswith(WEIGHT_PROBLEMS) else "name"
        problems.append(f"{where}.image_encoder.{key}: {problem}")
    if not is_pair(tname):
        problem = text_encoder_problem(tname)
        if problem:
            problems.append(f"{where}.text_encoder.name: {problem}")
    return problems


def problems_report(problems: list[str]) -> str:
    """One line per distinct problem (e.g. one per missing model), each with every key it concerns."""
    by_message: dict[str, list[str]] = {}
    for p in problems:
        key, _, message = p.partition(": ")
        by_message.setdefault(message, []).append(key)
    lines = [f"- {message} [{', '.join(keys)}]" for message, keys in by_message.items()]
    return f"{len(by_message)} problem(s) with the experiments' encoders:\n" + "\n".join(lines)
