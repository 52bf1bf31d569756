"""Fast tokenizers: a WordPiece vocabulary trained on the training corpus (small_bert) or a model's own."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from txtrayalign.errors import InputError
from txtrayalign.train.encoders import hf_hint, offline

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def wordpiece_vocabulary(texts: Iterable[str], vocab_size: int, normalizer, pre_tokenizer) -> list[str]:
    """Special tokens, every character (word-initial and ##continuation), then the most frequent words.

    Chosen by counting with ties broken by the word itself, so the same corpus always gives the same
    vocabulary (the `tokenizers` WordPiece trainer's choice varies between runs with its hash order,
    which would break exact resume and reproducibility). Rarer words fall back to characters.
    """
    from collections import Counter

    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for w in counts for c in w})
    vocab = list(SPECIAL_TOKENS) + chars + ["##" + c for c in chars]
    seen = set(vocab)
    for word, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(vocab) >= vocab_size:
            break
        if word not in seen:
            vocab.append(word)
            seen.add(word)
    return vocab


def train_wordpiece(texts: Iterable[str], vocab_size: int):
    """A BERT-style (lower-cased) WordPiece fast tokenizer with a vocabulary counted on `texts`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    vocab = wordpiece_vocabulary(texts, vocab_size, normalizer, pre_tokenizer)
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.WordPiece()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]",
    )
    log.info("built a WordPiece vocabulary of %d tokens", len(fast))
    return fast


def load_pretrained_tokenizer(name: str):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name, use_fast=True, local_files_only=offline())
    except Exception as e:
        raise OSError(hf_hint(name, e)) from e
    if not getattr(tok, "is_fast", False):
        raise InputError(f"'{name}' has no fast tokenizer; batched tokenisation needs one (tokenizer.json)")
    return tok


def get_tokenizer(text_cfg: dict, out_dir: Path, corpus: Iterable[str] | None = None):
    """The experiment's tokenizer; a small_bert vocabulary is trained once and kept in <out_dir>/tokenizer/.

    A pretrained pair's tokenizer is its own (`pretrained.PairTokenizer`), tied to `out_dir` where the
    model's preprocessing.json is written and read.
    """
    from transformers import PreTrainedTokenizerFast

    from txtrayalign.train.pretrained import is_pair, pair_tokenizer

    if is_pair(text_cfg["name"]):
        tok = pair_tokenizer(text_cfg["name"])
        tok.model_dir = Path(out_dir)
        return tok
    if text_cfg["name"] != "small_bert":
        return load_pretrained_tokenizer(text_cfg["name"])
    folder = Path(out_dir) / "tokenizer"
    if (folder / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(str(folder))
    if corpus is None:
        raise FileNotFoundError(f"small_bert tokenizer not found in {folder} (it is written by training)")
    tok = train_wordpiece(corpus, text_cfg["vocab_size"])
    save_tokenizer(tok, folder)
    return tok


def save_tokenizer(tok, folder: Path) -> None:
    """Write the tokenizer into `folder` via a temporary folder renamed at the end."""
    import os
    import shutil
    import tempfile

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tokenizer.", dir=folder.parent))
    try:
        tok.save_pretrained(str(tmp))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
