"""A fast CheXpert-compatible labeller: 14 observations per report or sentence.

`label_texts(texts)` / `label_reports(texts)` -> (N, 14) float64 in `constants.OBSERVATIONS` order,
1.0 positive, 0.0 negative, -1.0 uncertain, NaN not mentioned. `explain(text)` lists every mention
with its decision and trigger. `label_unique(texts, workers=1, labeller=None, desc="label")`
labels many texts, each distinct one once, over worker processes.

Modules: `mention`, `classify`, `aggregate` and the `phrases` folder (the labeller), `batch` (many texts, workers),
`files` (the CheXpert CSV input and output, MIMIC-CXR's official label table), `compare` (two
labellings of the same reports), `cli` (`txtrayalign label`, `chexpert`, `labels-compare`).
"""

from txtrayalign.chexpert.aggregate import Explanation, Labeller, explain, label_reports, label_texts
from txtrayalign.chexpert.batch import label_unique

__all__ = ["Explanation", "Labeller", "explain", "label_reports", "label_texts", "label_unique"]
