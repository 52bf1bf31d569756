# Sweeps: every point is scored on the validation split; a checkpoint chooses each sweep's setting by
# its mean validation metric over seeds, and only that setting's seeds are then evaluated on the test
# split (evaluate_experiment), so no other point's test job exists at all. Preprocessing, labels and
# splits are shared by every point: only training, embedding and scoring multiply.
# Expansion and helpers: sweep_plan.smk.


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
        # the sentence-level retrieval metrics only (rule_args.headline_settings, from evaluate.smk)
        settings=lambda w: headline_settings(evaluation(w), config["labels"], config["summary"]),
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
        " --settings {params.settings:q} --experiment {wildcards.exp} --out-dir {params.out_dir} --log {log}"


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
