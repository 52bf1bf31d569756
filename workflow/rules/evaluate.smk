# Embeddings, retrieval evaluation per experiment, and the summary across experiments.

from txtrayalign.rule_args import (
    embed_options,
    evaluation_settings,
    headline_settings,
    needs_train_queries,
    needs_validation_queries,
    official_labels_option,
)


rule embed:
    """Embed the query images and their studies' reports with the experiment's best model."""
    conda:
        "../../envs/train.yaml"
    input:
        model=RESULTS / "models" / "{exp}" / "best.pt",
        images=image_dir(DS) / "index.parquet",
        images_table=DS / "index" / "images.parquet",
        sections=DS / "text" / "sections.parquet",
        split=query_split_table,
    output:
        queries=DS / "embeddings" / "{exp}" / "queries.h5",
    params:
        model_dir=lambda w: model_dir(w.exp),
        query_split=lambda w: evaluation(w)["query_split"],
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
        log_path("embed", "{exp}", results=DS),
    benchmark:
        bench_path("embed", "{exp}", results=DS)
    shell:
        "txtrayalign embed --model-dir {params.model_dir:q} --images-index {input.images:q}"
        " --images-table {input.images_table:q} --split {input.split:q} --sections {input.sections:q}"
        " --query-split {params.query_split}"
        " --dtype {params.dtype} --batch-size {params.batch_size} --device {params.device}"
        " --out-queries {output.queries:q} --log {log:q}"


rule embed_validation:
    """Embed the validation split's query images and reports, for the evaluations that select or
    calibrate on it (requested only where `rule_args.needs_validation_queries` says so), or the
    training split's images without reports, for the linear probe (`rule_args.needs_train_queries`)."""
    conda:
        "../../envs/train.yaml"
    input:
        model=RESULTS / "models" / "{exp}" / "best.pt",
        images=image_dir(DS) / "index.parquet",
        images_table=DS / "index" / "images.parquet",
        sections=DS / "text" / "sections.parquet",
        split=query_split_table,
    output:
        queries=DS / "embeddings" / "{exp}" / "queries.{split}.h5",
    wildcard_constraints:
        split="validate|train",
    params:
        model_dir=lambda w: model_dir(w.exp),
        dtype=lambda w: evaluation(w)["dtype"],
        batch_size=lambda w: evaluation(w)["batch_size"],
        device=lambda w: "cuda" if EXPERIMENTS[w.exp]["gpus"] > 0 else "cpu",
        reports=lambda w: "--no-reports" if w.split == "train" else "",
        code=CODE["embed"],
    threads: 2
    resources:
        gpu=lambda w: min(1, EXPERIMENTS[w.exp]["gpus"]),
        mem_mb=8000,
        runtime=60,
    log:
        log_path("embed_{split}", "{exp}", results=DS),
    benchmark:
        bench_path("embed_{split}", "{exp}", results=DS)
    shell:
        "txtrayalign embed --model-dir {params.model_dir:q} --images-index {input.images:q}"
        " --images-table {input.images_table:q} --split {input.split:q} --sections {input.sections:q}"
        " --query-split {wildcards.split} {params.reports} --allow-empty"
        " --dtype {params.dtype} --batch-size {params.batch_size} --device {params.device}"
        " --out-queries {output.queries:q} --log {log:q}"


rule embed_bank:
    """Embed the sentence bank, the zero-shot prompts and the report bank with the experiment's best
    model: only where an evaluation uses them (bank_dir: with `evaluation.bank: source` another
    dataset's evaluation uses the training dataset's bank, and no bank of its own is embedded)."""
    conda:
        "../../envs/train.yaml"
    input:
        model=RESULTS / "models" / "{exp}" / "best.pt",
        sentences=DS / "text" / "sentences.parquet",
        sections=DS / "text" / "sections.parquet",
        split=query_split_table,
    output:
        bank=DS / "embeddings" / "{exp}" / "bank.h5",
    params:
        model_dir=lambda w: model_dir(w.exp),
        bank_splits=lambda w: ",".join(evaluation(w)["bank_splits"]),
        dedupe=lambda w: "" if evaluation(w)["dedupe"] else "--no-dedupe",
        dtype=lambda w: evaluation(w)["dtype"],
        batch_size=lambda w: evaluation(w)["batch_size"],
        device=lambda w: "cuda" if EXPERIMENTS[w.exp]["gpus"] > 0 else "cpu",
        # in params, so that new prompts or another report section re-embed
        wider=lambda w: embed_options(evaluation(w)),
        code=CODE["embed"],
    threads: 2
    resources:
        gpu=lambda w: min(1, EXPERIMENTS[w.exp]["gpus"]),
        mem_mb=8000,
        runtime=60,
    log:
        log_path("embed_bank", "{exp}", results=DS),
    benchmark:
        bench_path("embed_bank", "{exp}", results=DS)
    shell:
        "txtrayalign embed --model-dir {params.model_dir:q} --split {input.split:q}"
        " --sentences {input.sentences:q} --sections {input.sections:q}"
        " --bank-splits {params.bank_splits} {params.dedupe}"
        " --dtype {params.dtype} --batch-size {params.batch_size} --device {params.device}"
        " {params.wider} --out-bank {output.bank:q} --log {log:q}"


rule evaluate_experiment:
    """Image-to-text retrieval metrics with bootstrap intervals and baselines, for one experiment."""
    conda:
        "../../envs/train.yaml"
    input:
        queries=DS / "embeddings" / "{exp}" / "queries.h5",
        bank=lambda w: bank_dir(w) / "embeddings" / w.exp / "bank.h5",
        report_labels=DS / "labels" / "reports.parquet",
        sentence_labels=lambda w: bank_dir(w) / "labels" / "sentences.parquet",
        sentences=lambda w: bank_dir(w) / "text" / "sentences.parquet",
        sections=DS / "text" / "sections.parquet",
        bank_sections=lambda w: bank_dir(w) / "text" / "sections.parquet",
        bank_report_labels=lambda w: bank_dir(w) / "labels" / "reports.parquet",
        images=image_dir(DS) / "index.parquet",
        # the validation split's queries, for the evaluations that need them (rule embed_validation)
        validation_queries=lambda w: (
            [RESULTS_ROOT / w.dataset / "embeddings" / w.exp / "queries.validate.h5"]
            if needs_validation_queries(EXPERIMENTS[w.exp])
            else []
        ),
        # the training split's images, for the linear probe (rule embed_validation, split train)
        train_queries=lambda w: (
            [RESULTS_ROOT / w.dataset / "embeddings" / w.exp / "queries.train.h5"]
            if needs_train_queries(EXPERIMENTS[w.exp])
            else []
        ),
        # each query study's patient (rule demographics): the subgroups protocol
        patients=lambda w: (
            [RESULTS_ROOT / w.dataset / "index" / "patients.parquet"] if evaluation(w)["subgroups"]["enabled"] else []
        ),
    output:
        metrics=DS / "eval" / "{exp}" / "metrics.json",
        predictions=DS / "eval" / "{exp}" / "predictions.parquet",
        f1=report(
            DS / "eval" / "{exp}" / "f1_by_observation.png",
            caption="../report/f1_by_observation.rst",
            category="Evaluation",
            subcategory="{exp}",
        ),
        pr=report(
            DS / "eval" / "{exp}" / "precision_recall_vs_k.png",
            caption="../report/precision_recall_vs_k.rst",
            category="Evaluation",
            subcategory="{exp}",
        ),
        baselines=report(
            DS / "eval" / "{exp}" / "model_vs_baselines.png",
            caption="../report/model_vs_baselines.rst",
            category="Evaluation",
            subcategory="{exp}",
        ),
        zeroshot=report(
            DS / "eval" / "{exp}" / "zeroshot.png",
            caption="../report/zeroshot.rst",
            category="Evaluation",
            subcategory="{exp}",
        ),
        exact_pair=DS / "eval" / "{exp}" / "exact_pair.png",
        linear_probe=DS / "eval" / "{exp}" / "linear_probe.png",
        five_by_200_ids=DS / "eval" / "{exp}" / "five_by_200_ids.csv",
        linear_probe_ids=DS / "eval" / "{exp}" / "linear_probe_ids.csv",
        subgroups=report(
            DS / "eval" / "{exp}" / "subgroups.png",
            caption="../report/subgroups.rst",
            category="Evaluation",
            subcategory="{exp}",
        ),
        prevalence=report(
            DS / "eval" / "{exp}" / "prevalence.png",
            caption="../report/prevalence.rst",
            category="Evaluation",
            subcategory="{exp}",
        ),
        gallery=report(
            DS / "eval" / "{exp}" / "gallery.html",
            caption="../report/gallery.rst",
            category="Examples",
            subcategory="{exp}",
        ),
    params:
        # every setting as one JSON object: a new evaluation.* key reaches its protocol as it is
        settings=lambda w: evaluation_settings(evaluation(w), config["labels"], config["summary"]),
        official=lambda w: official_labels_option(DATASETS[w.dataset], DATASETS[w.dataset]["root"]),
        validation=lambda w, input: (
            f"--validation-queries {shlex.quote(str(input.validation_queries))}" if input.validation_queries else ""
        ),
        train=lambda w, input: (
            f"--train-queries {shlex.quote(str(input.train_queries))}" if input.train_queries else ""
        ),
        patients=lambda w, input: f"--patients {shlex.quote(str(input.patients))}" if input.patients else "",
        out_dir=lambda w: RESULTS_ROOT / w.dataset / "eval" / w.exp,
        code=CODE["evaluate"],
    threads: 2
    resources:
        mem_mb=8000,
        runtime=30,
    log:
        log_path("evaluate", "{exp}", results=DS),
    benchmark:
        bench_path("evaluate", "{exp}", results=DS)
    shell:
        "txtrayalign evaluate --queries {input.queries:q} --bank {input.bank:q}"
        " --report-labels {input.report_labels:q} --sentence-labels {input.sentence_labels:q}"
        " --sentences {input.sentences:q} --sections {input.sections:q} --images-index {input.images:q}"
        " --bank-sections {input.bank_sections:q} --bank-report-labels {input.bank_report_labels:q}"
        " {params.official} {params.validation} {params.train} {params.patients} --settings {params.settings:q}"
        " --out-dir {params.out_dir:q} --log {log:q}"


rule summarize:
    """The table across experiments (the earlier work's Table 5, with confidence intervals)."""
    conda:
        "../../envs/train.yaml"
    input:
        eval_metrics(),
    output:
        csv=RESULTS / "eval" / "summary.csv",
        md=report(RESULTS / "eval" / "summary.md", caption="../report/summary.rst", category="Summary"),
    params:
        k=config["summary"]["k"],
        code=CODE["evaluate"],
    resources:
        mem_mb=1000,
        runtime=5,
    log:
        log_path("summarize"),
    shell:
        "txtrayalign summarize --metrics {input:q} --k {params.k} --out-csv {output.csv:q}"
        " --out-md {output.md:q} --log {log:q}"
