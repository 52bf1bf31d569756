"""Sweeps: expansion into experiments (names, values, checks), selection on validation, the report."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from txtrayalign import settings, sweeps
from txtrayalign.evaluate import EvaluationInputError
from txtrayalign.evaluate.sweep_summary import (
    metrics_by_experiment,
    seed_statistics,
    select_setting,
    sensitivity_tables,
    write_selection,
    write_sweep_report,
)

ROOT = Path(__file__).resolve().parents[1]
GRID = {"train.lr_image": [0.001, 0.002, 0.004], "train.batch_size": [32, 64]}


def demo_config(sweep_specs: dict) -> dict:
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["sweeps"] = copy.deepcopy(sweep_specs)
    return cfg


def plan(sweep_specs: dict, experiments: dict | None = None) -> dict[str, sweeps.Sweep]:
    cfg = demo_config(sweep_specs)
    if experiments is not None:
        cfg["experiments"] = experiments
    settings.check_config(cfg)
    cfg.update(settings.with_defaults(cfg))
    return sweeps.plan_sweeps(cfg)


def config_error(sweep_specs: dict) -> str:
    with pytest.raises(settings.ConfigError) as err:
        plan(sweep_specs)
    return str(err.value)


# --- expansion ------------------------------------------------------------------------------------


def test_grid_expands_into_one_experiment_per_setting_and_seed():
    lr = plan({"lr": {"base": {"image_encoder": {"name": "resnet18"}}, "grid": GRID, "seeds": [0, 1, 2]}})["lr"]
    assert len(lr.experiments) == 18 and len(lr.settings) == 6
    exp = lr.experiments["lr__batch_size-64__lr_image-0.002__seed-1"]
    assert exp["train"]["lr_image"] == 0.002 and exp["train"]["batch_size"] == 64 and exp["train"]["seed"] == 1
    assert exp["image_encoder"]["name"] == "resnet18"  # the sweep's base
    assert exp["train"]["lr_text"] == 0.002 and exp["embed_dim"] == 128  # the config's defaults, untouched
    assert {p["seed"] for p in lr.points()} == {0, 1, 2}
    assert len({p["setting"] for p in lr.points()}) == 6


def test_names_depend_on_values_only():
    names = set(plan({"lr": {"grid": GRID, "seeds": [0, 1]}})["lr"].experiments)
    reordered = set(plan({"lr": {"grid": dict(reversed(GRID.items())), "seeds": [1, 0]}})["lr"].experiments)
    assert names == reordered
    # one value changed: only the points holding it get new names, every other point keeps its name
    changed = set(plan({"lr": {"grid": {**GRID, "train.lr_image": [0.001, 0.002, 0.008]}, "seeds": [0, 1]}})["lr"].experiments)
    assert len(names - changed) == len(changed - names) == 4
    assert all("lr_image-0.004" in n for n in names - changed)


def test_short_keys_and_value_slugs():
    assert sweeps.short_keys(["image_encoder.name", "text_encoder.name", "train.lr_image"]) == {
        "image_encoder.name": "image_encoder_name", "text_encoder.name": "text_encoder_name", "train.lr_image": "lr_image"}
    assert sweeps.value_slug("emilyalsentzer/Bio_ClinicalBERT") == "emilyalsentzer_Bio_ClinicalBERT"
    assert [sweeps.value_slug(v) for v in (1e-05, 0.5, 32, True, None)] == ["1e-05", "0.5", "32", "true", "null"]
    # two values with one slug: both get a hash of their value, so names stay distinct
    names = plan({"t": {"grid": {"text_encoder.name": ["org/model", "org_model", "other"]}}})["t"].settings
    assert len(names) == 3 and "t__text_encoder_name-other" in names
    assert sum("org_model-" in n for n in names) == 2


def test_random_draws_are_seeded_prefix_stable_and_in_range():
    space = {"train.lr_image": {"log_uniform": [1e-4, 1e-2]}, "train.batch_size": [16, 32, 64],
             "train.weight_decay": {"uniform": [0.0, 0.1]}}
    few = sweeps.draw_random({"n": 4, "seed": 3, "space": space})
    more = sweeps.draw_random({"n": 8, "seed": 3, "space": space})
    assert more[:4] == few and sweeps.draw_random({"n": 4, "seed": 3, "space": space}) == few
    assert sweeps.draw_random({"n": 4, "seed": 4, "space": space}) != few
    for p in more:
        assert 1e-4 <= p["train.lr_image"] <= 1e-2 and p["train.batch_size"] in (16, 32, 64)
        assert 0 <= p["train.weight_decay"] <= 0.1
        assert p["train.lr_image"] == float(f"{p['train.lr_image']:.3g}")  # 3 significant digits
    drawn = plan({"r": {"random": {"n": 5, "seed": 3, "space": space}, "seeds": [0, 1]}})["r"]
    assert len(drawn.experiments) == 2 * len(drawn.settings) and len(drawn.settings) >= 4
    # log-uniform: as many draws in each decade (a uniform draw would put 9 in 10 above 1e-3)
    lrs = [p["train.lr_image"] for p in sweeps.draw_random({"n": 300, "seed": 0, "space": {"train.lr_image": {"log_uniform": [1e-4, 1e-2]}}})]
    assert 0.4 < sum(v < 1e-3 for v in lrs) / len(lrs) < 0.6


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"grid": {"train.lr_imgae": [0.1]}}, "unknown key 'sweeps.x.grid.train.lr_imgae'"),
        ({"grid": {"train.lr_image": ["fast", 0.1]}}, "'sweeps.x.grid.train.lr_image' = 'fast': 'fast' is not of type 'number'"),
        ({"grid": {"train.seed": [1, 2]}}, "'sweeps.x.grid.train.seed': not sweepable (seeds go in sweeps.x.seeds)"),
        ({"grid": {"train.lr_image": [0.1]}, "random": {"n": 2, "space": {"embed_dim": [8]}}}, "'sweeps.x': give either grid or random"),
        ({"random": {"n": 2, "space": {"image_encoder.nam": ["resnet18"]}}}, "unknown key 'sweeps.x.random.image_encoder.nam'"),
        ({"base": {"train": {"epoch": 1}}, "grid": {"embed_dim": [8]}}, "unknown key 'sweeps.x.base.train.epoch'"),
        ({"grid": {"embed_dim": [8]}, "select": {"metric": "auc"}}, "'sweeps.x.select.metric' = 'auc'"),
        ({"grid": {"embed_dim": [8]}, "select": {"k": 3}}, "sweeps.x.select.k = 3 is not in the points' evaluation.k"),
        ({"grid": {"subset": ["half"]}}, "sweeps.x: subset = 'half' is not one of splits.subsets"),
        ({"base": {"evaluation": {"query_split": "validate"}}, "grid": {"embed_dim": [8]}}, "evaluation.query_split must be test"),
        ({"grid": {"evaluation.k": [[1, 2]]}}, "'sweeps.x.grid.evaluation.k': not sweepable (a sweep compares settings under one evaluation"),
    ],
)
def test_bad_sweeps_are_named_by_key(spec, message):
    cfg = demo_config({"x": spec})
    with pytest.raises(settings.ConfigError) as err:
        settings.check_config(cfg)
        cfg.update(settings.with_defaults(cfg))
        sweeps.plan_sweeps(cfg)
    assert message in str(err.value)


def test_a_point_named_like_an_experiment_and_an_empty_config_are_refused():
    with pytest.raises(settings.ConfigError, match="experiments.s__embed_dim-8__seed-0 has the name of a sweep point"):
        plan({"s": {"grid": {"embed_dim": [8]}}}, experiments={"s__embed_dim-8__seed-0": {}})
    with pytest.raises(settings.ConfigError, match="give at least one experiment"):
        plan({}, experiments={})


def test_paper_config_is_the_earlier_grid_as_sweeps():
    cfg = yaml.safe_load((ROOT / "config" / "txtrayalign-paper.yaml").read_text())
    settings.check_config(cfg)
    cfg.update(settings.with_defaults(cfg))
    planned = sweeps.plan_sweeps(cfg)
    assert sorted(planned) == ["paper-1pct", "paper-5pct", "paper-full"]
    exps = [e for s in planned.values() for e in s.experiments.values()]
    assert len(exps) == 18
    assert {(e["image_encoder"]["name"], e["text_encoder"]["name"], e["subset"]) for e in exps} == {
        (i, t, s) for i in ("resnet50", "efficientnet_b0")
        for t in ("emilyalsentzer/Bio_ClinicalBERT", "johngiorgi/declutr-sci-base", "distilbert-base-uncased")
        for s in ("1pct", "5pct", "full")}
    full = planned["paper-full"].experiments.values()
    assert all(e["train"]["batch_size"] == 512 and e["train"]["micro_batch_size"] == 128 for e in full)
    assert all(e["train"]["lr_image"] == 1e-4 and e["train"]["epochs"] == 50 for e in exps)


# --- seeds, selection and the report --------------------------------------------------------------


def test_seed_statistics_by_hand():
    s = seed_statistics([0.1, 0.2, 0.3])
    assert s["n_seeds"] == 3 and s["mean"] == pytest.approx(0.2) and s["sd"] == pytest.approx(0.1)
    half = 4.302652729749464 * 0.1 / math.sqrt(3)  # t(0.975, 2) from a table
    assert s["seed_ci_low"] == pytest.approx(0.2 - half) and s["seed_ci_high"] == pytest.approx(0.2 + half)
    one = seed_statistics([0.4])
    assert one["mean"] == 0.4 and math.isnan(one["sd"]) and math.isnan(one["seed_ci_low"])


def write_metrics(folder: Path, experiment: str, f1: float, k: int = 2) -> Path:
    entry = lambda v: {"value": v, "ci_low": v - 0.05, "ci_high": v + 0.05}  # noqa: E731
    metrics = {"experiment": experiment, "k": [1, k], "n_queries": 7, "methods": {"model": {"k": {str(k): {
        "f1": entry(f1), "precision": entry(f1 + 0.1), "recall": entry(f1 - 0.1), "flat_hit": entry(f1 + 0.2)}}}}}
    path = folder / experiment / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(metrics))
    return path


# validation F1 by (lr, batch) over seeds 0..2: means 0.30, 0.40 (chosen), 0.35 | 0.20, 0.38, 0.25
VALIDATION = {(0.001, 32): [0.3, 0.3, 0.3], (0.002, 32): [0.35, 0.4, 0.45], (0.004, 32): [0.2, 0.35, 0.5],
              (0.001, 64): [0.2, 0.2, 0.2], (0.002, 64): [0.38, 0.38, 0.38], (0.004, 64): [0.25, 0.25, 0.25]}


def small_sweep(tmp_path: Path):
    lr = plan({"lr": {"grid": GRID, "seeds": [0, 1, 2]}})["lr"]
    sweep = {"name": "lr", "keys": lr.keys, "metric": "f1", "k": 2, "points": lr.points()}
    paths = [write_metrics(tmp_path / "validation", p["experiment"], VALIDATION[(p["train.lr_image"], p["train.batch_size"])][p["seed"]])
             for p in sweep["points"]]
    return sweep, paths


def test_selection_takes_the_best_mean_over_seeds(tmp_path):
    sweep, paths = small_sweep(tmp_path)
    selection = select_setting(sweep, metrics_by_experiment([str(p) for p in paths]))
    assert selection["chosen"] == "lr__batch_size-32__lr_image-0.002" and selection["split"] == "validate"
    assert selection["chosen_experiments"] == [f"lr__batch_size-32__lr_image-0.002__seed-{s}" for s in (0, 1, 2)]
    by_setting = {s["setting"]: s for s in selection["settings"]}
    assert by_setting["lr__batch_size-64__lr_image-0.002"]["mean"] == pytest.approx(0.38)
    assert by_setting["lr__batch_size-64__lr_image-0.002"]["sd"] == pytest.approx(0.0)
    assert by_setting["lr__batch_size-32__lr_image-0.004"]["sd"] == pytest.approx(0.15)
    with pytest.raises(EvaluationInputError, match="no validate metrics given for sweep point"):
        select_setting(sweep, metrics_by_experiment([str(p) for p in paths[1:]]))
    # precision@2 is f1 + 0.1 everywhere: the same choice; a tie goes to the first setting name
    tied = {**sweep, "points": [p for p in sweep["points"] if p["train.lr_image"] == 0.001]}
    paths_tied = [p for p in paths if "lr_image-0.001_" in str(p)]
    for p in paths_tied:
        m = json.loads(p.read_text())
        m["methods"]["model"]["k"]["2"]["f1"]["value"] = 0.5
        p.write_text(json.dumps(m))
    assert select_setting(tied, metrics_by_experiment([str(p) for p in paths_tied]))["chosen"] == "lr__batch_size-32__lr_image-0.001"


def test_validation_scoring_takes_the_queries_own_sentences_out_of_the_bank():
    """A validation query must not find its own report's sentences (a test query never can): texts only
    the query studies wrote leave the bank; shared texts stay, counted over the other studies."""
    import numpy as np

    from txtrayalign.evaluate.inputs import SentenceBank
    from txtrayalign.evaluate.sweep_scoring import bank_without_query_studies

    sentences = pd.DataFrame({
        "study_id": [1, 1, 2, 3, 3, 4],
        "split": ["validate", "validate", "train", "train", "validate", "test"],
        "sentence": ["Only the query's own.", "No effusion.", "No effusion.", "Small effusion.", "Other validation.",
                     "Only the query's own."],
    }).astype({"sentence": "string", "split": "string"})
    texts = np.array(["Only the query's own.", "No effusion.", "Small effusion.", "Other validation."], dtype=object)
    bank = SentenceBank(embeddings=np.eye(4, dtype=np.float32), sentence_id=np.arange(4), texts=texts,
                        labels=np.zeros((4, 14), np.float32), text_count=np.array([1, 2, 1, 1]),
                        labelled_by="chexpert", path="bank.h5")
    out = bank_without_query_studies(bank, sentences, np.array([1]), ["train", "validate"])
    assert list(out.texts) == ["No effusion.", "Small effusion.", "Other validation."]  # the test study's copy does not count
    assert list(out.text_count) == [1, 1, 1] and list(out.sentence_id) == [1, 2, 3]
    assert np.array_equal(out.embeddings, np.eye(4, dtype=np.float32)[1:])


def test_sensitivity_table_per_key(tmp_path):
    sweep, paths = small_sweep(tmp_path)
    table = pd.DataFrame(select_setting(sweep, metrics_by_experiment([str(p) for p in paths]))["settings"])
    tables = sensitivity_tables(table, sweep["keys"])
    lr = tables["train.lr_image"]
    assert list(lr.index) == ["0.001", "0.002", "0.004"] and list(lr.columns) == ["batch_size=32", "batch_size=64"]
    assert lr.loc["0.002", "batch_size=32"] == "0.400 ± 0.050" and lr.loc["0.001", "batch_size=64"] == "0.200 ± 0.000"
    assert list(tables["train.batch_size"].index) == ["32", "64"]


def test_report_gives_every_number_its_split_and_tests_only_the_chosen_setting(tmp_path):
    sweep, paths = small_sweep(tmp_path)
    selection = select_setting(sweep, metrics_by_experiment([str(p) for p in paths]))
    write_selection(selection, tmp_path / "selection.json")
    test_paths = [str(write_metrics(tmp_path / "test", e, f1)) for e, f1 in zip(selection["chosen_experiments"], (0.3, 0.32, 0.34), strict=True)]
    out = tmp_path / "out"
    table = write_sweep_report(selection, test_paths, out / "summary.csv", out / "summary.md", out / "sensitivity.png")
    assert set(table["split"]) == {"validate", "test"}
    test_rows = table[table["split"] == "test"]
    assert set(test_rows["setting"]) == {selection["chosen"]}
    mean_f1 = test_rows[(test_rows["metric"] == "f1") & (test_rows["seed"] == "mean")].iloc[0]
    assert mean_f1["value"] == pytest.approx(0.32) and mean_f1["sd"] == pytest.approx(0.02)
    assert mean_f1["interval"] == "t over seeds"
    assert mean_f1["ci_high"] - mean_f1["value"] == pytest.approx(4.302652729749464 * 0.02 / math.sqrt(3))
    per_seed = test_rows[(test_rows["metric"] == "f1") & (test_rows["seed"] != "mean")]
    assert list(per_seed["interval"]) == ["bootstrap over queries"] * 3
    md = (out / "summary.md").read_text()
    assert "split: validate" in md and "split: test" in md and "**chosen**" in md
    assert "| mean ± sd over seeds |  |  | 0.520 ± 0.020 | 0.420 ± 0.020 | 0.220 ± 0.020 | 0.320 ± 0.020 |" in md
    assert (out / "sensitivity.png").read_bytes()[:4] == b"\x89PNG"
    assert pd.read_csv(out / "summary.csv")["split"].isin(["validate", "test"]).all()


# --- the workflow: a 3 x 2 x 3 sweep on the synthetic twin ------------------------------------------

SHARED_STAGES = ("synth", "index_dataset", "sections", "label", "split", "merge_images")


def sweep_run_config(folder: Path, lr_values=(0.001, 0.002, 0.004), batch_sizes=(8, 16), seeds=(0, 1, 2)) -> Path:
    """The tiny workflow configuration with no experiment but a sweep, by default the issue's 3 (lr) x 2
    (batch) x 3 (seeds)."""
    from workflow_helpers import tiny_config, write_config

    cfg = tiny_config(experiments=0, studies=80)
    cfg["defaults"]["evaluation"]["bootstrap"] = 20
    cfg["defaults"].update(cpus_per_gpu=1)  # one thread per training job: two points train at once on 2 cores
    cfg["defaults"]["train"]["num_workers"] = 0
    cfg["sweeps"] = {"lr": {"grid": {"train.lr_image": list(lr_values), "train.batch_size": list(batch_sizes)},
                            "seeds": list(seeds), "select": {"metric": "f1", "k": 2}}}
    return write_config(cfg, folder)


@pytest.mark.workflow
def test_dry_run_plans_one_job_per_shared_stage_and_one_training_per_point(tmp_path):
    from workflow_helpers import planned_jobs, snakemake

    from txtrayalign.constants import GROUPS

    result = snakemake(tmp_path, "-n", "--cores", "2", config=sweep_run_config(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result)
    assert jobs["train"] == jobs["embed_bank"] == jobs["embed_validation"] == 18
    assert all(jobs[stage] == 1 for stage in SHARED_STAGES), jobs
    assert jobs["images"] == len(GROUPS)  # one per shard, as for a single experiment
    assert jobs["select_setting"] == jobs["sweep_report"] == 1
    assert jobs["evaluate_experiment"] == jobs["embed"] == jobs["summarize"] == 0  # test jobs only after the selection


@pytest.mark.workflow
@pytest.mark.slow
class TestSweepRun:
    """The issue's 3 x 2 x 3 sweep end to end once on the tiny twin (18 points, three jobs each: about
    ten minutes of one pytest-xdist worker on 2 cores); the checks read its outputs and dry-run changes
    against it."""

    RUN = {"lr_values": (0.001, 0.002, 0.004), "batch_sizes": (8, 16), "seeds": (0, 1, 2)}
    SETTINGS = len(RUN["lr_values"]) * len(RUN["batch_sizes"])

    @pytest.fixture(scope="class")
    @classmethod
    def run(cls, tmp_path_factory):
        from workflow_helpers import snakemake

        folder = tmp_path_factory.mktemp("sweep")
        config = sweep_run_config(folder, **cls.RUN)
        result = snakemake(folder, "--cores", "2", config=config, timeout=2400)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
        return folder, config, result

    def test_selects_on_validation_and_tests_only_the_chosen_setting(self, run):
        folder, _, _ = run
        results = folder / "results" / "tiny"
        selection = json.loads((results / "sweeps" / "lr" / "selection.json").read_text())
        seeds = self.RUN["seeds"]
        assert selection["split"] == "validate" and len(selection["points"]) == self.SETTINGS * len(seeds)
        means = pd.DataFrame(selection["points"]).groupby("setting")["value"].mean()
        assert len(means) == self.SETTINGS and selection["chosen"] == means.idxmax()
        best = selection["chosen"]
        tested = sorted(p.parent.name for p in (results / "eval").glob("*/metrics.json"))
        assert tested == sorted(f"{best}__seed-{s}" for s in seeds)  # test: the chosen setting only
        summary = pd.read_csv(results / "sweeps" / "lr" / "summary.csv")
        assert set(summary.loc[summary["split"] == "test", "setting"]) == {best}
        md = (results / "sweeps" / "lr" / "summary.md").read_text()
        assert f"Chosen: **{best}**" in md and "mean ± sd over seeds" in md and "95% interval over seeds" in md
        assert (results / "sweeps" / "lr" / "sensitivity.png").stat().st_size > 1000

    def test_validation_scoring_is_the_evaluations_headline_scoring(self, run):
        """The sweep's scorer on a chosen point's test queries gives that point's metrics.json values."""
        from txtrayalign.evaluate.cli import read_settings
        from txtrayalign.evaluate.sweep_scoring import score_points
        from txtrayalign.rule_args import headline_settings

        folder, config, _ = run
        results = folder / "results" / "tiny"
        cfg = yaml.safe_load(config.read_text())
        exp = json.loads((results / "sweeps" / "lr" / "selection.json").read_text())["chosen_experiments"][0]
        evaluation = settings.resolve_experiment({}, "x", cfg["defaults"])["evaluation"]
        scoring = read_settings(headline_settings(evaluation, settings.with_defaults(cfg)["labels"], {"k": 2}))
        shared = {"report_labels": results / "labels" / "reports.parquet", "sentence_labels": results / "labels" / "sentences.parquet",
                  "sentences": results / "text" / "sentences.parquet", "sections": results / "text" / "sections.parquet"}
        scored, _ = score_points([{"experiment": exp}], [str(results / "embeddings" / exp / "queries.h5")],
                                 [str(results / "embeddings" / exp / "bank.h5")], {k: str(v) for k, v in shared.items()}, scoring)[exp]
        evaluated = json.loads((results / "eval" / exp / "metrics.json").read_text())
        for k in ("1", "2"):
            for name in ("flat_hit", "precision", "recall", "f1"):
                assert scored["methods"]["model"]["k"][k][name] == evaluated["methods"]["model"]["k"][k][name]

    def test_a_changed_value_retrains_only_its_points(self, run, tmp_path):
        from workflow_helpers import planned_jobs, snakemake

        folder, config, _ = run
        again = snakemake(folder, "-n", "--cores", "2", config=config, timeout=300)
        assert "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]
        changed = sweep_run_config(tmp_path, **{**self.RUN, "lr_values": (*self.RUN["lr_values"][:-1], 0.008)})
        jobs = planned_jobs(snakemake(folder, "-n", "--cores", "2", config=changed, timeout=300))
        # only the new value's points: lr 0.008 x every batch size x every seed
        assert jobs["train"] == jobs["embed_validation"] == len(self.RUN["batch_sizes"]) * len(self.RUN["seeds"])
        assert not any(jobs[stage] for stage in (*SHARED_STAGES, "images")), jobs
        assert jobs["select_setting"] == 1
