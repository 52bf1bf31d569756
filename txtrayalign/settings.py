"""The settings schema, its defaults and its checks: one place for the workflow and `txtrayalign train`.

`config.schema.yaml` beside this module declares every key with its type and default. The Snakefile
checks the whole configuration with `check_config`, fills the defaults in (`with_defaults`) and
resolves each experiment with `resolve_experiments`; `txtrayalign train` resolves the JSON it is
given with `resolve_experiment`. Every problem is a `ConfigError` naming the key
(`experiments.<name>.train.epoch`), never a bare "is not valid under any of the given schemas".
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml

from txtrayalign.errors import InputError

SCHEMA_FILE = Path(__file__).with_name("config.schema.yaml")

# The experiment keys that decide what training computes (the rest is evaluation and scheduling).
TRAINING_KEYS = ("gpus", "image_encoder", "text_encoder", "embed_dim", "train")


class ConfigError(InputError):
    """A setting that is unknown, of the wrong type or out of range; the message names the key."""


@functools.lru_cache(maxsize=1)
def schema() -> dict:
    return yaml.safe_load(SCHEMA_FILE.read_text(encoding="utf-8"))


def _resolve_ref(node: dict) -> dict:
    while "$ref" in node:
        node = schema()["definitions"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def experiment_schema() -> dict:
    return schema()["definitions"]["experiment"]


def defaults_of(node: dict) -> dict:
    """The defaults a schema node declares, nested like the settings (mappings without any are {})."""
    node = _resolve_ref(node)
    out: dict[str, Any] = {}
    for key, sub in node.get("properties", {}).items():
        sub = _resolve_ref(sub)
        if "default" in sub:
            out[key] = copy.deepcopy(sub["default"])
        elif "properties" in sub:
            out[key] = defaults_of(sub)
    return out


def merge(base: dict, override: dict | None) -> dict:
    """`override` deep-merged into a copy of `base` (mappings merge key by key, anything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _dotted(prefix: str, path) -> str:
    parts = [prefix] if prefix else []
    parts += [str(p) for p in path]
    return ".".join(parts)


def problems(instance: Any, node: dict, prefix: str = "") -> list[str]:
    """Everything wrong with `instance` against schema `node`, each message naming its key."""
    import jsonschema

    root = dict(node)
    root.setdefault("definitions", schema()["definitions"])
    validator = jsonschema.Draft202012Validator(root)
    out = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path]):
        where = _dotted(prefix, error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = sorted(error.schema.get("properties", {}))
            for key in sorted(set(error.instance) - set(known)):
                out.append(f"unknown key '{_dotted(where, [key])}'; known keys here: {', '.join(known)}")
        elif error.validator == "required" and isinstance(error.instance, dict):
            for key in [k for k in error.validator_value if k not in error.instance]:
                out.append(f"'{_dotted(where, [key])}' is missing; it has no default and must be given")
        else:
            out.append(f"'{where}' = {error.instance!r}: {error.message}")
    return out


def _raise(found: list[str], label: str) -> None:
    if found:
        raise ConfigError(f"{label}: " + "; ".join(found))


def relation_problems(exp: dict, prefix: str = "") -> list[str]:
    """What the schema cannot say about a resolved experiment (relations between its values)."""
    t, out = exp["train"], []
    where = f"{prefix}." if prefix else ""
    mb = t.get("micro_batch_size")
    if mb is not None and mb > t["batch_size"]:
        out.append(f"'{where}train.micro_batch_size' = {mb} is larger than train.batch_size ({t['batch_size']})")
    lo, hi = t["augment"]["crop_scale"]
    if lo > hi:
        out.append(f"'{where}train.augment.crop_scale' = {[lo, hi]}: low must not exceed high")
    return out


def resolve_experiment(user: dict | None, prefix: str = "", base: dict | None = None) -> dict:
    """Schema defaults, then `base` (the workflow's `defaults`), then `user`; checked, key named on error."""
    label = "config" if prefix else "experiment settings"
    _raise(problems(user, experiment_schema(), prefix), label)
    exp = merge(merge(defaults_of(experiment_schema()), base), user)
    _raise(problems(exp, experiment_schema(), prefix) + relation_problems(exp, prefix), label)
    return exp


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML syntax error in one line: where (line and column, counted from 1) and what."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    what = " ".join(str(getattr(exc, "problem", None) or exc).split())
    context = getattr(exc, "context", None)
    return f"{where}{what}" + (f" ({' '.join(context.split())})" if context else "")


def load_config_file(path: str | Path) -> dict:
    """A settings file read as YAML; a syntax error names the file and its line, in one line."""
    try:
        with open(path, encoding="utf-8") as f:
            loaded = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {yaml_problem(exc)}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: must hold sections (`dataset:`, `experiments:` ...), not a {type(loaded).__name__}")
    return loaded


def without_empty_sections(config: dict | None) -> dict:
    """The configuration without top-level sections left empty (`images:` with every key commented
    out reads as null): an empty section means its defaults, as an absent one does."""
    return {k: v for k, v in (config or {}).items() if v is not None or k == "experiments"}


def check_config(config: dict) -> None:
    """The whole workflow configuration against the schema (before defaults), naming every bad key."""
    if not isinstance(config, dict):
        raise ConfigError(f"config: the settings must be a mapping of sections, not {type(config).__name__}")
    _raise(problems(config, schema()), "config")


def filled(node: dict, given: Any) -> Any:
    """`given` with the defaults of schema `node` filled in, key by key: a mapping the schema declares
    key by key (`properties`) is filled recursively; any other value given replaces the default whole
    (`splits.subsets: {half: 0.5}` does not keep the default's `full`)."""
    node = _resolve_ref(node)
    if "properties" not in node or not isinstance(given, dict):
        return copy.deepcopy(given)
    out = copy.deepcopy(given)
    for key, sub in node["properties"].items():
        sub = _resolve_ref(sub)
        if key in given:
            out[key] = filled(sub, given[key])
        elif "default" in sub:
            out[key] = copy.deepcopy(sub["default"])
        elif "properties" in sub:
            out[key] = filled(sub, {})
    return out


def with_defaults(config: dict) -> dict:
    """The configuration with every default the schema declares filled in (experiments aside: see
    `resolve_experiments`)."""
    top = schema()
    return filled({**top, "properties": {k: v for k, v in top["properties"].items()
                                         if k not in ("defaults", "experiments")}}, config)


# `text.train_section: default` by dataset format: MIMIC's layouts keep the impression (the earlier
# study's text); a table or Open-i dataset, whose reports often have no impression, takes `auto`.
TRAIN_SECTION_BY_FORMAT = {"table": "auto", "openi": "auto"}


def train_section(text: dict, dataset: dict) -> str:
    """The training text of a dataset: `text.train_section`, with `default` resolved by its format."""
    chosen = text["train_section"]
    if chosen != "default":
        return chosen
    return TRAIN_SECTION_BY_FORMAT.get(dataset.get("format", "auto"), "impression")


# `text.max_empty_share: null`: a share of studies without training text that stops the text stage.
# MIMIC-CXR trained on the impression loses ~17% of its studies (no impression section; the synthetic
# demo copies that share), which the earlier study accepted; anything else should lose almost none.
MAX_EMPTY_SHARE = 0.05
MAX_EMPTY_SHARE_MIMIC_IMPRESSION = 0.25


def max_empty_share(text: dict, dataset: dict) -> float:
    """`text.max_empty_share`, with `null` resolved by the dataset's format and training text."""
    if text["max_empty_share"] is not None:
        return float(text["max_empty_share"])
    mimic = dataset.get("format", "auto") not in TRAIN_SECTION_BY_FORMAT
    return MAX_EMPTY_SHARE_MIMIC_IMPRESSION if mimic and train_section(text, dataset) == "impression" else MAX_EMPTY_SHARE


def resolve_experiments(config: dict) -> dict[str, dict]:
    """Each experiment: schema defaults, then `defaults`, then its own keys; cross-checked with the rest."""
    base = config.get("defaults") or {}
    _raise(problems(base, experiment_schema(), "defaults"), "config")
    out = {}
    for name, overrides in (config.get("experiments") or {}).items():
        exp = resolve_experiment(overrides or {}, f"experiments.{name}", base)
        subsets = config["splits"]["subsets"]
        if exp["subset"] not in subsets:
            raise ConfigError(f"config: experiments.{name}.subset = {exp['subset']!r} is not one of "
                              f"splits.subsets ({', '.join(subsets)})")
        k = config.get("summary", {}).get("k")
        if k is not None and k not in exp["evaluation"]["k"]:
            raise ConfigError(f"config: summary.k = {k} is not in experiments.{name}.evaluation.k")
        out[name] = exp
    return out


def training_settings(exp: dict, name: str | None = None) -> dict:
    """What `txtrayalign train` gets: the experiment's name and its training keys."""
    return {"name": name, **{k: copy.deepcopy(exp[k]) for k in TRAINING_KEYS}}
