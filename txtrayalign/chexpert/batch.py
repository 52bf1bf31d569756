"""Label many texts: each distinct text once, optionally over several processes."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from multiprocessing import get_context

import numpy as np

from txtrayalign.chexpert.aggregate import Labeller, default_labeller
from txtrayalign.constants import OBSERVATIONS
from txtrayalign.utils import progress

log = logging.getLogger(__name__)

CHUNK = 2_000  # distinct texts per task sent to a worker process
_worker_labeller: Labeller | None = None


def _init_worker(labeller: Labeller | None) -> None:
    global _worker_labeller
    _worker_labeller = labeller


def _label_chunk(texts: list[str]) -> np.ndarray:
    return (_worker_labeller or default_labeller()).label_texts(texts)


def label_unique(texts: Sequence[str], workers: int = 1, labeller: Labeller | None = None,
                 desc: str = "label") -> np.ndarray:
    """(N, 14) float64 labels of `texts` in OBSERVATIONS order (1 / 0 / -1 / NaN), each distinct text
    labelled once, over `workers` spawned processes (1: in this process). `labeller` defaults to
    the packaged CheXpert rules; a non-string text is labelled as empty (all blank)."""
    texts = [t if isinstance(t, str) else "" for t in texts]
    if not texts:
        return np.empty((0, len(OBSERVATIONS)))
    unique, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
    unique = unique.tolist()
    chunks = [unique[i : i + CHUNK] for i in range(0, len(unique), CHUNK)]
    log.info("%s: %d texts, %d distinct, %d chunk(s), %d worker(s)", desc, len(texts), len(unique),
             len(chunks), workers)
    results: list[np.ndarray] = []
    if workers > 1 and len(chunks) > 1:
        with get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(labeller,)) as pool:
            for block in progress(pool.imap(_label_chunk, chunks), desc, total=len(chunks), unit="chunk"):
                results.append(block)
    else:
        _init_worker(labeller)
        try:
            for chunk in progress(chunks, desc, total=len(chunks), unit="chunk"):
                results.append(_label_chunk(chunk))
        finally:
            _init_worker(None)
    return np.concatenate(results)[inverse.reshape(-1)]
