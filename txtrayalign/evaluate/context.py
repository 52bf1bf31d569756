"""The settings of one evaluation and what every protocol shares (`Context`).

- `resolve_settings(given)`: the `evaluation`, `labels` and `summary` settings with the schema's
  defaults filled in and checked (txtrayalign/config.schema.yaml is their only home).
- `summary_k(settings)` / `evaluated_ks(settings)`: the k of single-k tables and figures, and the
  validated k list — the one place they are decided.
- `stream_seed(seed, name)`: the entropy of one independent random stream of the user's seed.
- `Context`: the resolved settings, k list, summary k, seed, the bootstrap resample matrix shared by
  every metric, the text labeller, and the sentence-level retrieval of every method.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from . import EvaluationInputError

if TYPE_CHECKING:
    from .labels import Labeller
    from .scoring import Retrieval

# Each random draw gets its own stream, (seed, stream id), so that e.g. the bootstrap resamples are
# not correlated with the random baseline's draws although both come from the one seed. A name not
# listed here (a new protocol's) gets a stable id from its name.
STREAMS = {"sample": 1, "random": 2, "bootstrap": 3, "random_ranks": 4, "random_reports": 5}
SETTING_BLOCKS = ("evaluation", "labels", "summary")


def stream_seed(seed: int, stream: str) -> list[int]:
    """The entropy of one independent random stream derived from the user's seed."""
    return [int(seed), STREAMS.get(stream, zlib.crc32(stream.encode()) + len(STREAMS) + 1)]


def _schema_node(block: str) -> dict:
    from txtrayalign.settings import schema

    root = schema()
    return root["definitions"]["evaluation"] if block == "evaluation" else root["properties"][block]


def resolve_settings(given: Mapping | None) -> dict[str, dict]:
    """{"evaluation", "labels", "summary"}: `given`'s blocks over the schema's defaults, checked."""
    from txtrayalign.settings import ConfigError, defaults_of, merge, problems

    given = dict(given or {})
    unknown = sorted(set(given) - set(SETTING_BLOCKS))
    if unknown:
        raise ConfigError(f"evaluation settings: unknown block(s) {unknown}; known: {list(SETTING_BLOCKS)}")
    out = {}
    for block in SETTING_BLOCKS:
        node = _schema_node(block)
        found = problems(given.get(block) or {}, node, block)
        if found:
            raise ConfigError("evaluation settings: " + "; ".join(found))
        out[block] = merge(defaults_of(node), given.get(block))
    return out


def evaluated_ks(settings: Mapping) -> list[int]:
    """The evaluated cut-offs of `settings["evaluation"]["k"]`, sorted, each once."""
    ks = sorted(set(int(k) for k in settings["evaluation"]["k"]))
    if not ks or ks[0] < 1:
        raise EvaluationInputError(f"k values must be positive, got {ks}")
    return ks


def summary_k(settings: Mapping) -> int:
    """The k of the text metrics, the sensitivity table, the figures and summary.md (`summary.k`)."""
    k = int(settings["summary"]["k"])
    if k not in evaluated_ks(settings):
        raise EvaluationInputError(f"summary k={k} is not one of the evaluated k {evaluated_ks(settings)}")
    return k


@dataclass(frozen=True)
class Context:
    """What a protocol gets beside the inputs (see `txtrayalign.evaluate` for the protocol contract)."""

    settings: dict  # resolved {"evaluation", "labels", "summary"} blocks
    ks: list[int]
    summary_k: int
    seed: int
    counts: np.ndarray | None  # (B, N) bootstrap resample counts of the queries, shared by every metric
    labeller: Labeller | None  # labels joined retrieved text; None: combine the sentences' own labels
    sentence_retrieval: dict[str, Retrieval] = field(default_factory=dict)  # method -> sentence retrieval

    def rng(self, stream: str) -> np.random.Generator:
        """A generator of its own for a protocol's random draws (`stream`: the protocol's name)."""
        return np.random.default_rng(stream_seed(self.seed, stream))

    @property
    def evaluation(self) -> dict:
        """The resolved `evaluation` settings (a protocol's own block: `context.evaluation["<name>"]`)."""
        return self.settings["evaluation"]
