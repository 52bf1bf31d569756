"""CheXbert (Smit et al., EMNLP 2020) as a labeller backend; see `txtrayalign.chexbert.model`.

`label_reports(texts, checkpoint, batch_size, device, tokenizer) -> (N, 14)` float64 in
`constants.OBSERVATIONS` order (1 / 0 / -1 / NaN), the contract of `txtrayalign.chexpert.label_reports`;
`CheXbertLabeller.load(...)` keeps the model loaded for several calls (`label_texts`).
"""

from txtrayalign.chexbert.model import (
    CHECKPOINT_ENV,
    CHEXBERT_CONDITIONS,
    CLASS_VALUES,
    DEFAULT_BATCH_SIZE,
    HEAD_CLASSES,
    MAX_TOKENS,
    TOKENIZER_ENV,
    CheXbertError,
    CheXbertLabeller,
    CheXbertModel,
    classes_to_values,
    config_from_state,
    head_layout,
    label_reports,
    load_tokenizer,
    prepare_report,
    read_state_dict,
)

__all__ = [
    "CHECKPOINT_ENV",
    "CHEXBERT_CONDITIONS",
    "CLASS_VALUES",
    "DEFAULT_BATCH_SIZE",
    "HEAD_CLASSES",
    "MAX_TOKENS",
    "TOKENIZER_ENV",
    "CheXbertError",
    "CheXbertLabeller",
    "CheXbertModel",
    "classes_to_values",
    "config_from_state",
    "head_layout",
    "label_reports",
    "load_tokenizer",
    "prepare_report",
    "read_state_dict",
]
