"""The evaluation protocols `evaluate()` runs after the sentence-level retrieval metrics, in order.

A protocol is one module here (the contract: `txtrayalign.evaluate`'s docstring, docs/design.md
"Adding an evaluation"); adding one is its module plus one line in `PROTOCOLS` (and its import).
The order is that of metrics.json's sections, summary.md's sections and summary.csv's columns.
"""

from __future__ import annotations

from . import (
    exact_pair,
    five_by_200,
    label_sensitivity,
    linear_probe,
    report_retrieval,
    subgroups,
    text_similarity,
    text_to_image,
    zeroshot,
)

PROTOCOLS = (
    zeroshot,
    text_similarity,
    report_retrieval,
    label_sensitivity,
    exact_pair,
    text_to_image,
    five_by_200,
    linear_probe,
    subgroups,
)
