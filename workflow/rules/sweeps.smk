# Sweeps (config `sweeps`, txtrayalign/sweeps.py): every (setting, seed) point is an experiment of its
# own, trained and embedded by the ordinary rules and scored on the validation split. A checkpoint
# chooses each sweep's setting by its mean validation metric over seeds; only that setting's seeds are
# then evaluated on the test split (evaluate_experiment), so no other point's test job exists at all.
# Preprocessing, labels and splits are shared by every point: only train/embed/evaluate multiply.

from txtrayalign import sweeps as sweep_plans

try:
    SWEEPS = sweep_plans.plan_sweeps(config)
except settings.ConfigError as e:
    raise WorkflowError(str(e)) from None
for _sweep in SWEEPS.values():
    EXPERIMENTS.update(_sweep.experiments)
_sweep_problems = [
    p for _sweep in SWEEPS.values() for _name, _exp in _sweep.experiments.items()
    for p in experiment_problems({**_exp, "name": _name})
]
if _sweep_problems:
    raise WorkflowError(f"config: {problems_report(_sweep_problems)}")

SWEEP_DIR = RESULTS / "sweeps"


def sweep_json(name):
    """What `sweep-select` needs: the sweep's keys, selection rule and points (a rule parameter, so a
    changed selection rule or another setting reruns the selection)."""
    sweep = SWEEPS[name]
    return json.dumps(
        {"name": name, "keys": sweep.keys, "metric": sweep.metric, "k": sweep.k, "points": sweep.points()},
        sort_keys=True,
    )


def validation_metrics(name):
    return [SWEEP_DIR / "validation" / exp / "metrics.json" for exp in SWEEPS[name].experiments]


def chosen_test_metrics(wildcards):
    """The chosen setting's test metrics, every seed: known once the selection checkpoint has run."""
    selection = checkpoints.select_setting.get(sweep=wildcards.sweep).output.selection
    chosen = json.loads(Path(selection).read_text())["chosen_experiments"]
    return [RESULTS / "eval" / exp / "metrics.json" for exp in chosen]


def sweep_outputs():
    return [SWEEP_DIR / name / f for name in SWEEPS for f in ("summary.md", "summary.csv", "sensitivity.png")]


rule embed_sweep_validation:
    """Embed the validation split's query images with a sweep point's best model."""
    conda:
        "../../envs/train.yaml"
    input:
        model=RESULTS / "models" / "{exp}" / "best.pt",
        images=image_dir() / "index.parquet",
        images_table=RESULTS / "index" / "images.parquet",
        sections=RESULTS / "text" / "sections.parquet",
        split=lambda w: RESULTS / "splits" / f"{EXPERIMENTS[w.exp]['subset']}.parquet",
    output:
        queries=SWEEP_DIR / "validation" / "{exp}" / "queries.h5",
    params:
        model_dir=lambda w: model_dir(w.exp),
        dtype=lambda w: evaluation(w)["dtype"],
        batch_size=lambda w: evaluation(w)["batch_size"],
        device=lambda w: "cuda" if EXPERIMENTS[w.exp]["gpus"] > 0 else "cpu",
        code=CODE["embed"],
    threads: 2
    resources:
        gpu=lambda w: min(1, EXPERIMENTS[w.exp]["gpus"]),
        mem_mb=8000,
        runtime=60,
    log:
        log_path("embed_sweep_validation", "{exp}"),
    shell:
        "txtrayalign embed --model-dir {params.model_dir} --images-index {input.images}"
        " --images-table {input.images_table} --split {input.split} --sections {input.sections}"
        " --query-split validate"
        " --dtype {params.dtype} --batch-size {params.batch_size} --device {params.device}"
        " --out-queries {output.queries} --log {log}"


rule score_validation:
    """A sweep point's headline retrieval scores (flat-hit, precision, recall, F1 at k, with bootstrap
    intervals) on the validation queries: what the sweep selects on."""
    conda:
        "../../envs/train.yaml"
    input:
        queries=SWEEP_DIR / "validation" / "{exp}" / "queries.h5",
        bank=RESULTS / "embeddings" / "{exp}" / "bank.h5",
        report_labels=RESULTS / "labels" / "reports.parquet",
        sentence_labels=RESULTS / "labels" / "sentences.parquet",
        sentences=RESULTS / "text" / "sentences.parquet",
        sections=RESULTS / "text" / "sections.parquet",
        images=image_dir() / "index.parquet",
    output:
        metrics=SWEEP_DIR / "validation" / "{exp}" / "metrics.json",
    params:
        k=lambda w: " ".join(str(k) for k in evaluation(w)["k"]),
        bootstrap=lambda w: evaluation(w)["bootstrap"],
        seed=lambda w: evaluation(w)["seed"],
        query_labels=lambda w: evaluation(w)["query_labels"],
        out_dir=lambda w: SWEEP_DIR / "validation" / w.exp,
        code=CODE["evaluate"],
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    log:
        log_path("score_validation", "{exp}"),
    shell:
        "txtrayalign evaluate --queries {input.queries} --bank {input.bank}"
        " --report-labels {input.report_labels} --sentence-labels {input.sentence_labels}"
        " --sentences {input.sentences} --sections {input.sections} --images-index {input.images}"
        " --query-labels {params.query_labels} --k {params.k}"
        " --bootstrap {params.bootstrap} --seed {params.seed} --gallery 0"
        " --no-zeroshot --report-k --reference-section none --no-sensitivity"
        " --experiment {wildcards.exp} --out-dir {params.out_dir} --log {log}"


checkpoint select_setting:
    """Choose a sweep's setting on the validation split (mean of the metric over seeds)."""
    conda:
        "../../envs/train.yaml"
    input:
        lambda w: validation_metrics(w.sweep),
    output:
        selection=SWEEP_DIR / "{sweep}" / "selection.json",
    params:
        sweep=lambda w: sweep_json(w.sweep),
        code=CODE["evaluate"],
    resources:
        mem_mb=1000,
        runtime=5,
    wildcard_constraints:
        sweep="|".join(re.escape(name) for name in SWEEPS) or "(?!)",
    log:
        log_path("select_setting", "{sweep}"),
    shell:
        "txtrayalign sweep-select --sweep-json {params.sweep:q} --validation-metrics {input}"
        " --out {output.selection} --log {log}"


rule sweep_report:
    """A sweep's summary: every setting on validation, the chosen one on test, seed spread, sensitivity."""
    conda:
        "../../envs/train.yaml"
    input:
        selection=SWEEP_DIR / "{sweep}" / "selection.json",
        test=chosen_test_metrics,
    output:
        csv=SWEEP_DIR / "{sweep}" / "summary.csv",
        md=report(SWEEP_DIR / "{sweep}" / "summary.md", category="Sweeps", subcategory="{sweep}"),
        png=report(SWEEP_DIR / "{sweep}" / "sensitivity.png", category="Sweeps", subcategory="{sweep}"),
    params:
        code=CODE["evaluate"],
    resources:
        mem_mb=1000,
        runtime=5,
    wildcard_constraints:
        sweep="|".join(re.escape(name) for name in SWEEPS) or "(?!)",
    log:
        log_path("sweep_report", "{sweep}"),
    shell:
        "txtrayalign sweep-report --selection {input.selection} --test-metrics {input.test}"
        " --out-csv {output.csv} --out-md {output.md} --out-png {output.png} --log {log}"


rule sweeps_all:
    """Every sweep's summary (validation for every setting, test for the chosen one)."""
    input:
        sweep_outputs(),
