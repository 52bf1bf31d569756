# Sweeps (config `sweeps`, txtrayalign/sweeps.py), expanded before anything runs: every (setting,
# seed) point becomes an experiment of EXPERIMENTS, so the ordinary rules train and embed it. The
# rules that score, select and report are in sweeps.smk.

from txtrayalign import sweeps as sweep_plans

try:
    SWEEPS = sweep_plans.plan_sweeps(config)
except settings.ConfigError as e:
    stop(str(e))
for _sweep in SWEEPS.values():
    EXPERIMENTS.update(_sweep.experiments)
_sweep_problems = [
    p for _sweep in SWEEPS.values() for _name, _exp in _sweep.experiments.items()
    for p in experiment_problems({**_exp, "name": _name})
]
if _sweep_problems:
    stop(f"config: {problems_report(_sweep_problems)}")

SWEEP_DIR = RESULTS / "sweeps"


def sweep_json(name):
    """What `sweep-select` needs: the sweep's keys, selection rule and points (a rule parameter, so a
    changed selection rule or another setting reruns the selection)."""
    sweep = SWEEPS[name]
    return json.dumps(
        {"name": name, "keys": sweep.keys, "metric": sweep.metric, "k": sweep.k, "points": sweep.points()},
        sort_keys=True,
    )


def sweep_files(name, file):
    """Every point's embeddings/<exp>/<file>, in the order of the sweep's points."""
    return [RESULTS / "embeddings" / point["experiment"] / file for point in SWEEPS[name].points()]


def sweep_scoring_settings(name):
    """The headline-only `--settings` of a sweep's validation scoring (its points share one evaluation)."""
    first = next(iter(SWEEPS[name].experiments.values()))
    return headline_settings(first["evaluation"], config["labels"], config["summary"])


def chosen_test_metrics(wildcards):
    """The chosen setting's test metrics, every seed: known once the selection checkpoint has run."""
    selection = checkpoints.select_setting.get(sweep=wildcards.sweep).output.selection
    chosen = json.loads(Path(selection).read_text())["chosen_experiments"]
    return [RESULTS / "eval" / exp / "metrics.json" for exp in chosen]


def sweep_outputs():
    return [SWEEP_DIR / name / f for name in SWEEPS for f in ("summary.md", "summary.csv", "sensitivity.png")]
