"""Sweeps: a grid or a seeded random draw of experiment settings, trained once per seed.

A sweep (the config's `sweeps.<name>`) is expanded, before anything runs, into ordinary experiments:
one per (setting, seed), each resolved like `experiments.<name>` (schema defaults, then `defaults`,
then the sweep's `base`, then the point's values, then `train.seed`). Every point has a readable name
built from its values only, `<sweep>__<key>-<value>__..__seed-<n>` (keys in alphabetical order, each
the shortest unambiguous tail of its dotted path), so the same settings always give the same name and
results path, and changing one value of a grid reruns only the points that value touches.

Snakemake's `Paramspace` turns a table of settings into `key~value/...` path patterns; we keep its
idea (a table of points, readable paths) but give each point a single path component, so the
existing per-experiment rules (`{exp}`) train, embed and evaluate sweep points unchanged, and dotted
keys and Hugging Face names (`org/model`) need no nested folders.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from dataclasses import dataclass, field

import numpy as np

from txtrayalign import settings
from txtrayalign.settings import ConfigError

SEP = "__"
SELECT_METRICS = ("f1", "precision", "recall", "flat_hit")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class Sweep:
    """One expanded sweep: its settings (name -> dotted values), seeds and selection rule."""

    name: str
    keys: list[str]  # the swept dotted keys, in the config's order
    settings: dict[str, dict] = field(default_factory=dict)  # setting name -> {dotted key: value}
    seeds: list[int] = field(default_factory=list)
    metric: str = "f1"
    k: int = 2
    experiments: dict[str, dict] = field(default_factory=dict)  # experiment name -> resolved experiment

    def experiment_name(self, setting: str, seed: int) -> str:
        return f"{setting}{SEP}seed-{seed}"

    def points(self) -> list[dict]:
        """One row per experiment: sweep, setting, seed, experiment and the swept values."""
        return [
            {"sweep": self.name, "setting": s, "seed": seed, "experiment": self.experiment_name(s, seed), **values}
            for s, values in self.settings.items()
            for seed in self.seeds
        ]


def nested(dotted: dict) -> dict:
    """{"train.lr_image": 0.1} -> {"train": {"lr_image": 0.1}}."""
    out: dict = {}
    for key, value in dotted.items():
        *parents, last = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = copy.deepcopy(value)
    return out


def _value_problems(key: str, values: list, where: str) -> list[str]:
    """Each value of a swept key checked against the experiment schema, as an override at `key`."""
    found: list[str] = []
    for value in values:
        for problem in settings.problems(nested({key: value}), settings.experiment_schema(), where):
            if problem not in found:
                found.append(problem)
    return found


def draw_random(spec: dict) -> list[dict]:
    """`random.n` points drawn with `random.seed`: a list value is picked from, {log_uniform: [lo, hi]}
    and {uniform: [lo, hi]} are sampled (rounded to 3 significant digits, so the name is the value).

    Points are drawn one after another from one generator, so a larger n keeps the earlier points.
    A point drawn twice is kept once.
    """
    rng = np.random.default_rng(spec.get("seed", 0))
    points: list[dict] = []
    for _ in range(spec["n"]):
        point = {}
        for key, choice in spec["space"].items():
            if isinstance(choice, list):
                point[key] = copy.deepcopy(choice[int(rng.integers(len(choice)))])
            elif "log_uniform" in choice:
                lo, hi = (math.log(v) for v in choice["log_uniform"])
                point[key] = float(f"{math.exp(rng.uniform(lo, hi)):.3g}")
            else:
                lo, hi = choice["uniform"]
                point[key] = float(f"{rng.uniform(lo, hi):.3g}")
        if point not in points:
            points.append(point)
    return points


def grid_points(grid: dict) -> list[dict]:
    """Every combination of the grid's values (the first key varies slowest)."""
    points: list[dict] = [{}]
    for key, values in grid.items():
        points = [{**p, key: copy.deepcopy(v)} for p in points for v in values]
    return points


def short_keys(keys: list[str]) -> dict[str, str]:
    """Each dotted key's shortest tail that no other key ends with, dots as underscores (a bare `name`
    keeps its parent: image_encoder_name)."""
    out = {}
    for key in keys:
        parts = key.split(".")
        for n in range(2 if parts[-1] == "name" else 1, len(parts) + 1):
            tail = parts[-n:]
            if not any(o != key and o.split(".")[-n:] == tail for o in keys):
                break
        out[key] = "_".join(tail)
    return out


def value_slug(value) -> str:
    """A value as a path-safe word: numbers as written, strings with unsafe runs replaced by '_'."""
    if isinstance(value, bool) or value is None:
        text = json.dumps(value)
    elif isinstance(value, (int, float)):
        text = repr(value)
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, sort_keys=True)
    return _UNSAFE.sub("_", text).strip("_") or "empty"


def _slugs(points: list[dict], key: str) -> dict[str, str]:
    """value (as JSON) -> slug for one key; values whose slugs collide get a short hash of the value."""
    by_json = {json.dumps(p[key], sort_keys=True): p[key] for p in points}
    plain = {j: value_slug(v) for j, v in by_json.items()}
    taken = list(plain.values())
    return {
        j: f"{slug}-{hashlib.sha1(j.encode()).hexdigest()[:8]}" if taken.count(slug) > 1 else slug
        for j, slug in plain.items()
    }


def setting_names(sweep: str, points: list[dict]) -> dict[str, dict]:
    """Setting name -> values, the name from the values only (keys sorted by their short form)."""
    keys = list(points[0]) if points else []
    short = short_keys(keys)
    slugs = {key: _slugs(points, key) for key in keys}
    out = {}
    for p in points:
        words = [f"{short[k]}-{slugs[k][json.dumps(p[k], sort_keys=True)]}" for k in sorted(keys, key=short.get)]
        out[SEP.join([sweep, *words])] = p
    return out


def _space_problems(name: str, spec: dict) -> list[str]:
    """Wrong keys or values of a sweep's grid or random space, named as sweeps.<name>.<form>.<key>."""
    found: list[str] = []
    for form in ("grid", "random"):
        if form not in spec:
            continue
        space = spec["grid"] if form == "grid" else spec["random"]["space"]
        for key, choice in space.items():
            if key == "train.seed":
                found.append(f"'sweeps.{name}.{form}.{key}': not sweepable (seeds go in sweeps.{name}.seeds)")
                continue
            if key.split(".")[0] in ("evaluation", "evaluate_on"):
                found.append(f"'sweeps.{name}.{form}.{key}': not sweepable (a sweep compares settings under one "
                             f"evaluation: set it in sweeps.{name}.base)")
                continue
            if isinstance(choice, list):
                values = choice
            else:
                values = [float(v) for v in next(iter(choice.values()))]
            found += _value_problems(key, values, f"sweeps.{name}.{form}")
    if ("grid" in spec) == ("random" in spec):
        found.append(f"'sweeps.{name}': give either grid or random (one of them)")
    return found


def _check_experiment(exp: dict, name: str, config: dict) -> None:
    where = f"sweeps.{name}"
    subsets = config["splits"]["subsets"]
    if exp["subset"] not in subsets:
        raise ConfigError(f"config: {where}: subset = {exp['subset']!r} is not one of splits.subsets ({', '.join(subsets)})")
    if exp["evaluate_on"]:
        raise ConfigError(f"config: {where}: evaluate_on is not supported in a sweep (it selects and reports on {config['dataset']['name']})")
    if exp["evaluation"]["query_split"] != "test":
        raise ConfigError(f"config: {where}: evaluation.query_split must be test (a sweep selects on validate, reports on test)")


def plan_sweep(name: str, spec: dict, config: dict) -> Sweep:
    """The sweep's settings and resolved experiments; ConfigError naming the key on a bad setting."""
    found = _space_problems(name, spec)
    if found:
        raise ConfigError("config: " + "; ".join(found))
    points = grid_points(spec["grid"]) if "grid" in spec else draw_random(spec["random"])
    select = spec.get("select") or {}
    k = select.get("k") or config.get("summary", {}).get("k", 2)
    sweep = Sweep(name=name, keys=list(points[0]), settings=setting_names(name, points),
                  seeds=list(spec.get("seeds") or [0]), metric=select.get("metric", "f1"), k=k)
    base = settings.merge(config.get("defaults") or {}, spec.get("base") or {})
    for setting, values in sweep.settings.items():
        for seed in sweep.seeds:
            user = settings.merge(nested(values), {"train": {"seed": seed}})
            exp = settings.resolve_experiment(user, f"sweeps.{name}", base)
            _check_experiment(exp, name, config)
            if k not in exp["evaluation"]["k"]:
                raise ConfigError(f"config: sweeps.{name}.select.k = {k} is not in the points' evaluation.k {exp['evaluation']['k']}")
            sweep.experiments[sweep.experiment_name(setting, seed)] = exp
    return sweep


def plan_sweeps(config: dict) -> dict[str, Sweep]:
    """Every sweep of the (checked, defaults-filled) config, expanded (its `base` the schema checked
    already); a point named like an experiment of `experiments` is an error."""
    sweeps = {name: plan_sweep(name, spec, config) for name, spec in (config.get("sweeps") or {}).items()}
    names = [e for s in sweeps.values() for e in s.experiments]
    clash = sorted(set(names) & set(config.get("experiments") or {}))
    if clash:
        raise ConfigError(f"config: experiments.{clash[0]} has the name of a sweep point; rename it")
    if not sweeps and not config.get("experiments"):
        raise ConfigError("config: experiments: give at least one experiment (or a sweep under sweeps)")
    return sweeps


def expand_sweeps(config: dict) -> dict[str, dict]:
    """Experiment name -> resolved experiment, for every point of every sweep."""
    return {name: exp for sweep in plan_sweeps(config).values() for name, exp in sweep.experiments.items()}
