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
        elif error.validator == "required":
            out.append(f"'{where or 'the settings'}': {error.message}")
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


def check_config(config: dict) -> None:
    """The whole workflow configuration against the schema (before defaults), naming every bad key."""
    _raise(problems(config, schema()), "config")


def with_defaults(config: dict) -> dict:
    """The configuration with every default the schema declares filled in (experiments aside)."""
    filled = merge({k: v for k, v in defaults_of(schema()).items() if k not in ("defaults", "experiments")}, config)
    return filled


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
