"""A fast CheXpert-compatible labeller: 14 observations per report or sentence.

`label_texts(texts)` / `label_reports(texts)` -> (N, 14) float64 in `constants.OBSERVATIONS` order,
1.0 positive, 0.0 negative, -1.0 uncertain, NaN not mentioned. `explain(text)` lists every mention
with its decision and trigger. `label_unique(texts, workers=1, labeller=None, desc="label")`
labels many texts, each distinct one once, over worker processes.
"""

from txtrayalign.chexpert.aggregate import Explanation, Labeller, explain, label_reports, label_texts
from txtrayalign.chexpert.batch import label_unique

__all__ = ["Explanation", "Labeller", "explain", "label_reports", "label_texts", "label_unique"]
