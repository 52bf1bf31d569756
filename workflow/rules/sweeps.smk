# Sweeps: every point's validation queries are embedded (embed_validation) and scored with the
# evaluation's headline metrics; a checkpoint scores them all in one job and chooses each sweep's
# setting by its mean validation metric over seeds. Only that setting's seeds are then evaluated on
# the test split (evaluate_experiment), so no other point's test job exists at all. Preprocessing,
# labels and splits are shared by every point: only training and embedding multiply.
# Expansion and helpers: sweep_plan.smk.


checkpoint select_setting:
    """Score every point of a sweep on the validation split (the evaluation's headline metrics) and
    choose its setting: the best mean of the chosen metric over seeds."""
    conda:
        "../../envs/train.yaml"
    input:
        queries=lambda w: sweep_files(w.sweep, "queries.validate.h5"),
        banks=lambda w: sweep_files(w.sweep, "bank.h5"),
        report_labels=RESULTS / "labels" / "reports.parquet",
        sentence_labels=RESULTS / "labels" / "sentences.parquet",
        sentences=RESULTS / "text" / "sentences.parquet",
        sections=RESULTS / "text" / "sections.parquet",
    output:
        selection=SWEEP_DIR / "{sweep}" / "selection.json",
    params:
        sweep=lambda w: sweep_json(w.sweep),
        settings=lambda w: sweep_scoring_settings(w.sweep),
        code=CODE["evaluate"],
    resources:
        mem_mb=4000,
        runtime=30,
    wildcard_constraints:
        sweep="|".join(re.escape(name) for name in SWEEPS) or "(?!)",
    log:
        log_path("select_setting", "{sweep}"),
    shell:
        "txtrayalign sweep-select --sweep-json {params.sweep:q} --settings {params.settings:q}"
        " --validation-queries {input.queries:q} --banks {input.banks:q}"
        " --report-labels {input.report_labels:q} --sentence-labels {input.sentence_labels:q}"
        " --sentences {input.sentences:q} --sections {input.sections:q}"
        " --out {output.selection:q} --log {log:q}"


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
        "txtrayalign sweep-report --selection {input.selection:q} --test-metrics {input.test:q}"
        " --out-csv {output.csv:q} --out-md {output.md:q} --out-png {output.png:q} --log {log:q}"


rule sweeps_all:
    """Every sweep's summary (validation for every setting, test for the chosen one)."""
    input:
        sweep_outputs(),
