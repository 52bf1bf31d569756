"""CheXbert (Smit et al., EMNLP 2020) as a labeller backend: 14 observations per report, on GPU when present.

The model is CheXbert's own layout, so the checkpoint users download (`chexbert.pth`, from the
CheXbert repository's instructions) loads as it is:

- `bert`: a `transformers.BertModel` (BERT-base: 12 layers, hidden 768, vocabulary 30,522);
- `linear_heads`: a `ModuleList` of 14 `Linear(hidden, classes)` heads, one per observation in
  CheXbert's order (`CHEXBERT_CONDITIONS`, not ours): 13 heads of four classes
  (0 blank, 1 positive, 2 negative, 3 uncertain) and a last one of two classes for No Finding
  (0 blank, 1 positive);
- forward: the last hidden state of the [CLS] token -> dropout (identity in eval mode) -> each head;
  the predicted class is the arg-max of each head.

`chexbert.pth` is `{"model_state_dict": ...}` saved from `torch.nn.DataParallel`, so every key starts
with `module.`; it is read with `torch.load(weights_only=True)` (plain tensors, no pickled code).

Reports are prepared as CheXbert's labeller does: surrounding whitespace stripped, newlines and runs of
whitespace made one space, then tokenised with the bert-base-uncased WordPiece tokenizer and cut to the
first 512 tokens counting [CLS] and [SEP] ([CLS] + 510 tokens + [SEP]); an empty report is [CLS][SEP].

Classes map to our values (`txtrayalign.chexpert` conventions, `constants.OBSERVATIONS` order) as
CheXbert's `save_preds` does: blank -> NaN, positive -> 1, negative -> 0, uncertain -> -1.

Where the files come from (nothing is downloaded here):
- checkpoint: `checkpoint=` argument (config `labels.chexbert.checkpoint`, CLI `--chexbert-checkpoint`),
  else the environment variable `CHEXBERT_CHECKPOINT`.
- tokenizer: a local folder holding the bert-base-uncased tokenizer (`vocab.txt`, optionally
  `tokenizer.json`, `tokenizer_config.json`, `config.json`) given as `tokenizer=` (config
  `labels.chexbert.tokenizer`, CLI `--chexbert-tokenizer`), else `CHEXBERT_TOKENIZER`, else
  `bert-base-uncased` from the local Hugging Face cache (never fetched). On a machine with internet,
  `python -c "from transformers import AutoTokenizer as T; T.from_pretrained('bert-base-uncased')
  .save_pretrained('bert-base-uncased')"` writes such a folder.

The encoder's size is read from the checkpoint's tensor shapes (layers, hidden size, vocabulary,
positions); the number of attention heads comes from `config.json` in the tokenizer folder when there
is one, else BERT's convention of one head per 64 hidden units.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from txtrayalign.constants import OBSERVATIONS
from txtrayalign.errors import InputError
from txtrayalign.utils import progress

log = logging.getLogger(__name__)

CHECKPOINT_ENV = "CHEXBERT_CHECKPOINT"
TOKENIZER_ENV = "CHEXBERT_TOKENIZER"
DEFAULT_TOKENIZER = "bert-base-uncased"
MAX_TOKENS = 512
DEFAULT_BATCH_SIZE = 32

def _chexbert_order() -> list[str]:
    """CheXbert's head order (its src/constants.py CONDITIONS): ours with Lung Opacity before Lung Lesion
    and No Finding moved last (the column order of CheXbert's output CSVs too)."""
    order = [o for o in OBSERVATIONS if o != "No Finding"] + ["No Finding"]
    i, j = order.index("Lung Lesion"), order.index("Lung Opacity")
    order[i], order[j] = order[j], order[i]
    return order


CHEXBERT_CONDITIONS: list[str] = _chexbert_order()
HEAD_CLASSES: list[int] = [4] * 13 + [2]
# Class index -> our value: 0 blank, 1 positive, 2 negative, 3 uncertain.
CLASS_VALUES = np.array([np.nan, 1.0, 0.0, -1.0])
# Column j of our output takes head HEAD_OF_OBSERVATION[j].
HEAD_OF_OBSERVATION: list[int] = [CHEXBERT_CONDITIONS.index(name) for name in OBSERVATIONS]

_WHITESPACE = re.compile(r"\s+")
# Buffers some transformers versions save and others do not: never an error either way.
_OPTIONAL_KEYS = ("bert.embeddings.position_ids",)


class CheXbertError(InputError):
    """The CheXbert checkpoint or tokenizer is missing or does not have CheXbert's layout."""


class CheXbertModel(nn.Module):
    """CheXbert's `bert_labeler`: BERT encoder, [CLS] -> dropout -> one linear head per observation."""

    def __init__(self, config, dropout: float = 0.1, head_classes: Sequence[int] = HEAD_CLASSES) -> None:
        super().__init__()
        from transformers import BertModel

        self.bert = BertModel(config)
        self.dropout = nn.Dropout(dropout)
        hidden = config.hidden_size
        self.linear_heads = nn.ModuleList([nn.Linear(hidden, c, bias=True) for c in head_classes])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        hidden = self.bert(input_ids, attention_mask=attention_mask)[0]
        cls = self.dropout(hidden[:, 0, :])
        return [head(cls) for head in self.linear_heads]


def resolve_path(value: str | os.PathLike | None, env: str) -> str | None:
    """`value` when given, else the environment variable `env`, else None."""
    if value not in (None, ""):
        return str(value)
    return os.environ.get(env) or None


def _missing_checkpoint_message(where: str | None) -> str:
    what = f"CheXbert checkpoint not found: {where}" if where else "no CheXbert checkpoint given"
    return (
        f"{what}. Download chexbert.pth (see https://github.com/stanfordmlgroup/CheXbert) and give its path "
        f"as labels.chexbert.checkpoint in the config, --chexbert-checkpoint on the command line, or the "
        f"environment variable {CHECKPOINT_ENV}"
    )


def read_state_dict(checkpoint: str | os.PathLike | None) -> dict[str, torch.Tensor]:
    """The model state dict of a `chexbert.pth`, with DataParallel's `module.` prefix removed.

    Accepts `{"model_state_dict": {...}}` (what CheXbert saves) or a bare state dict.
    """
    path = resolve_path(checkpoint, CHECKPOINT_ENV)
    if path is None or not Path(path).is_file():
        raise CheXbertError(_missing_checkpoint_message(path))
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt file, not a torch file, or pickled objects beyond tensors
        raise CheXbertError(f"{path}: cannot be read as a CheXbert checkpoint ({exc})") from exc
    state = raw.get("model_state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheXbertError(f"{path}: expected a dict with 'model_state_dict' (a state dict of tensors)")
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}


def head_layout(state: dict[str, torch.Tensor], path: str = "checkpoint") -> list[int]:
    """Number of classes of each linear head in `state`; a clear error unless it is CheXbert's 13 x 4 + 1 x 2."""
    heads: dict[int, int] = {}
    for key, value in state.items():
        m = re.fullmatch(r"linear_heads\.(\d+)\.weight", key)
        if m:
            heads[int(m.group(1))] = int(value.shape[0])
    layout = [heads[i] for i in sorted(heads)]
    if sorted(heads) != list(range(len(heads))) or layout != HEAD_CLASSES:
        raise CheXbertError(
            f"{path}: linear heads {layout or 'missing'} do not match CheXbert's layout "
            f"(14 heads: 13 with 4 classes, then No Finding with 2; keys linear_heads.<i>.weight/bias)"
        )
    return layout


def config_from_state(state: dict[str, torch.Tensor], num_attention_heads: int | None = None, path: str = ""):
    """A `BertConfig` whose sizes match the tensors of `state` (BERT-base for the real checkpoint)."""
    from transformers import BertConfig

    needed = [
        "bert.embeddings.word_embeddings.weight",
        "bert.embeddings.position_embeddings.weight",
        "bert.embeddings.token_type_embeddings.weight",
        "bert.encoder.layer.0.intermediate.dense.weight",
    ]
    missing = [k for k in needed if k not in state]
    if missing:
        raise CheXbertError(f"{path}: not a CheXbert checkpoint, missing {missing} (with or without 'module.')")
    vocab, hidden = state[needed[0]].shape
    layers = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"bert\.encoder\.layer\.(\d+)\.", k)))
    heads = num_attention_heads or max(1, hidden // 64)
    if hidden % heads:
        raise CheXbertError(f"{path}: hidden size {hidden} is not a multiple of {heads} attention heads")
    return BertConfig(
        vocab_size=int(vocab),
        hidden_size=int(hidden),
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=int(state[needed[3]].shape[0]),
        max_position_embeddings=int(state[needed[1]].shape[0]),
        type_vocab_size=int(state[needed[2]].shape[0]),
    )


def load_tokenizer(tokenizer: str | os.PathLike | None = None):
    """The WordPiece tokenizer from a local folder (or the local HF cache); never downloads."""
    from transformers import AutoTokenizer

    where = resolve_path(tokenizer, TOKENIZER_ENV) or DEFAULT_TOKENIZER
    hint = (
        f"give a local folder holding the bert-base-uncased tokenizer (vocab.txt) as labels.chexbert.tokenizer, "
        f"--chexbert-tokenizer or {TOKENIZER_ENV}"
    )
    if Path(where).exists() and not Path(where).is_dir():
        raise CheXbertError(f"CheXbert tokenizer {where}: not a folder; {hint}")
    try:
        return AutoTokenizer.from_pretrained(where, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise CheXbertError(f"CheXbert tokenizer {where!r} not found locally ({exc.__class__.__name__}); {hint}") from exc


def _heads_from_config(tokenizer_dir: str | None) -> int | None:
    if tokenizer_dir and (Path(tokenizer_dir) / "config.json").is_file():
        import json

        return int(json.loads((Path(tokenizer_dir) / "config.json").read_text()).get("num_attention_heads", 0)) or None
    return None


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class CheXbertLabeller:
    """A loaded CheXbert model and tokenizer; `label_texts(texts)` -> (N, 14) like `chexpert.Labeller`."""

    model: CheXbertModel
    tokenizer: object
    device: torch.device
    batch_size: int = DEFAULT_BATCH_SIZE

    @classmethod
    def load(
        cls,
        checkpoint: str | os.PathLike | None = None,
        tokenizer: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> CheXbertLabeller:
        path = resolve_path(checkpoint, CHECKPOINT_ENV)
        state = read_state_dict(path)
        head_layout(state, str(path))
        tok_dir = resolve_path(tokenizer, TOKENIZER_ENV)
        config = config_from_state(state, _heads_from_config(tok_dir), str(path))
        tok = load_tokenizer(tok_dir)
        if len(tok) > config.vocab_size:
            raise CheXbertError(
                f"tokenizer {tok_dir or DEFAULT_TOKENIZER} has {len(tok)} tokens but {path} embeds "
                f"{config.vocab_size}: not the tokenizer this checkpoint was trained with"
            )
        model = CheXbertModel(config)
        own = model.state_dict()
        missing = [k for k in own if k not in state and k not in _OPTIONAL_KEYS]
        unexpected = [k for k in state if k not in own and k not in _OPTIONAL_KEYS]
        if missing or unexpected:
            raise CheXbertError(
                f"{path}: does not match CheXbert's layout: missing {missing[:5]}{'…' if len(missing) > 5 else ''}"
                f", unexpected {unexpected[:5]}{'…' if len(unexpected) > 5 else ''}"
            )
        wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
        if wrong:
            raise CheXbertError(f"{path}: tensor shapes do not match CheXbert's layout for {wrong[:5]}")
        model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
        dev = torch.device(device) if device is not None else default_device()
        model.to(dev).eval()
        log.info("CheXbert loaded from %s (%d layers, hidden %d) on %s", path, config.num_hidden_layers,
                 config.hidden_size, dev)
        return cls(model=model, tokenizer=tok, device=dev, batch_size=batch_size)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each prepared report, at most 512 with [CLS] and [SEP] (CheXbert's cut)."""
        prepared = [prepare_report(t) for t in texts]
        enc = self.tokenizer(prepared, truncation=True, max_length=MAX_TOKENS, add_special_tokens=True)
        return enc["input_ids"]

    def predict_classes(self, texts: Sequence[str]) -> np.ndarray:
        """(N, 14) int class index of every head, in CheXbert's head order."""
        ids = self.encode(texts)
        out = np.zeros((len(ids), len(HEAD_CLASSES)), dtype=np.int64)
        order = np.argsort([len(x) for x in ids], kind="stable")  # similar lengths share a batch: less padding
        pad = self.tokenizer.pad_token_id or 0
        starts = range(0, len(order), self.batch_size)
        with torch.inference_mode():
            for s in progress(starts, desc="chexbert", total=len(starts), unit="batch"):
                rows = order[s : s + self.batch_size]
                width = max(len(ids[r]) for r in rows)
                batch = torch.full((len(rows), width), pad, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for i, r in enumerate(rows):
                    batch[i, : len(ids[r])] = torch.tensor(ids[r])
                    mask[i, : len(ids[r])] = 1
                logits = self.model(batch.to(self.device), mask.to(self.device))
                out[rows] = torch.stack([h.argmax(dim=1) for h in logits], dim=1).cpu().numpy()
        return out

    def label_texts(self, texts: Iterable[str]) -> np.ndarray:
        """(N, 14) float64 in `OBSERVATIONS` order: 1 positive, 0 negative, -1 uncertain, NaN blank.

        Each distinct text goes through the model once (retrieved sentences repeat a lot).
        """
        texts = [t if isinstance(t, str) else "" for t in texts]
        if not texts:
            return np.zeros((0, len(OBSERVATIONS)), dtype=np.float64)
        unique, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
        return classes_to_values(self.predict_classes(unique.tolist()))[inverse.reshape(-1)]


def prepare_report(text: str) -> str:
    """CheXbert's report clean-up: strip, newlines and whitespace runs become one space."""
    return _WHITESPACE.sub(" ", str(text).strip()).strip()


def classes_to_values(classes: np.ndarray) -> np.ndarray:
    """(N, 14) class indices in CheXbert's head order -> (N, 14) values in `OBSERVATIONS` order."""
    classes = np.asarray(classes)
    if classes.ndim != 2 or classes.shape[1] != len(HEAD_CLASSES):
        raise ValueError(f"expected (N, {len(HEAD_CLASSES)}) class indices, got {classes.shape}")
    return CLASS_VALUES[classes[:, HEAD_OF_OBSERVATION]]


def label_reports(
    texts: Iterable[str],
    checkpoint: str | os.PathLike | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device | None = None,
    tokenizer: str | os.PathLike | None = None,
) -> np.ndarray:
    """Label reports with CheXbert: (N, 14) float64 in `OBSERVATIONS` order, as `chexpert.label_reports`.

    Args:
        texts: report texts (impressions, as CheXbert was trained on, or any section).
        checkpoint: path to `chexbert.pth`; default `$CHEXBERT_CHECKPOINT`.
        batch_size: reports per forward pass.
        device: "cuda", "cpu", ...; default CUDA when available.
        tokenizer: local folder of the bert-base-uncased tokenizer; default `$CHEXBERT_TOKENIZER`, else
            `bert-base-uncased` from the local Hugging Face cache.
    """
    labeller = CheXbertLabeller.load(checkpoint, tokenizer=tokenizer, device=device, batch_size=batch_size)
    return labeller.label_texts(texts)
