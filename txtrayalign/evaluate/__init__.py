"""Embedding, retrieval, metrics, baselines, plots and summaries for image-to-text evaluation.

Submodules:
- `embed`: encode query images, the sentence bank and the query reports into HDF5 files.
- `retrieval`: exact chunked top-k similarity between any two embedding sets.
- `metrics`: the hit-based metrics of the earlier work, the report-generation metrics, exact-pair recall.
- `baselines`: random, most-frequent-sentences and label-oracle retrieval.
- `bootstrap`: vectorised percentile confidence intervals.
- `evaluation`: loads and checks the inputs and runs everything for one experiment.
- `plots`, `gallery`, `summary`: figures, the HTML gallery and the cross-experiment table.
- `cli`: the `embed`, `evaluate` and `summarize` subcommands.
"""

from __future__ import annotations


class EvaluationInputError(ValueError):
    """The inputs to embedding or evaluation do not fit together (ids, sizes, k); the message names the files."""
