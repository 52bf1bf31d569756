"""Experiment settings for `txtrayalign train`: the packaged schema's defaults overlaid with the user's.

The schema (`txtrayalign/config.schema.yaml`, read by `txtrayalign.settings`) is the one the
workflow checks too: every key is known there, and an unknown key or a wrong value is an error that
names it, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import json
from pathlib import Path

from txtrayalign.settings import ConfigError, resolve_experiment, training_settings


def resolve(experiment: str | dict | None) -> dict:
    """Defaults overlaid with the experiment's settings: a dict, a JSON string or a path to a JSON file.

    Returns the training settings (`name`, `gpus`, `image_encoder`, `text_encoder`, `embed_dim`,
    `train`); any other experiment key (evaluation, scheduling) is checked and left out.
    """
    if experiment is None:
        user: dict = {}
    elif isinstance(experiment, dict):
        user = dict(experiment)
    else:
        text = str(experiment).strip()
        if not text.startswith("{") and Path(text).is_file():
            text = Path(text).read_text()
        try:
            user = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"--experiment-json is neither valid JSON nor an existing file: {e}") from e
    if not isinstance(user, dict):
        raise ConfigError("the experiment settings must be a JSON object")
    name = user.pop("name", None)
    return training_settings(resolve_experiment(user), name)
