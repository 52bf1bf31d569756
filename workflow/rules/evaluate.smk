# Embeddings, retrieval evaluation per experiment, and the summary across experiments.

import shlex


def _wider(w, key):
    """One of the evaluation's issue-15 blocks (zeroshot, report_retrieval, text_metrics, sensitivity)."""
    return evaluation(w).get(key, {})


def _enabled(w, key):
    return _wider(w, key).get("enabled", True)


def _chexbert_args(w):
    cb = config["labels"].get("chexbert", {}) or {}
    args = []
    if cb.get("checkpoint"):
        args.append(f"--chexbert-checkpoint {cb['checkpoint']}")
    if cb.get("tokenizer"):
        args.append(f"--chexbert-tokenizer {cb['tokenizer']}")
    if cb.get("device"):
        args.append(f"--chexbert-device {cb['device']}")
    args.append(f"--chexbert-batch-size {cb.get('batch_size', 32)}")
    return " ".join(args)


def _official_labels():
    """The dataset's own label table, when there is one: the official truth rows of the sensitivity table."""
    if DATASET.get("format") == "table":
        path = RESULTS / "index" / "labels.csv.gz"
    else:
        path = DATA_ROOT / "mimic-cxr-2.0.0-chexpert.csv.gz"
    return f"--official-labels {path}" if Path(path).is_file() else ""


rule embed:
    """Embed the query images, the sentence bank, the zero-shot prompts and the report bank with the
    experiment's best model."""
    conda:
        "../../envs/train.yaml"
    input:
        model=RESULTS / "models" / "{exp}" / "best.pt",
        images=image_dir() / "index.parquet",
        images_table=RESULTS / "index" / "images.parquet",
        sentences=RESULTS / "text" / "sentences.parquet",
        sections=RESULTS / "text" / "sections.parquet",
        split=lambda w: RESULTS / "splits" / f"{EXPERIMENTS[w.exp]['subset']}.parquet",
    output:
        queries=RESULTS / "embeddings" / "{exp}" / "queries.h5",
        bank=RESULTS / "embeddings" / "{exp}" / "bank.h5",
    params:
        model_dir=lambda w: model_dir(w.exp),
        query_split=lambda w: evaluation(w)["query_split"],
        bank_splits=lambda w: ",".join(evaluation(w)["bank_splits"]),
        dedupe=lambda w: "" if evaluation(w)["dedupe"] else "--no-dedupe",
        dtype=lambda w: evaluation(w)["dtype"],
        batch_size=lambda w: evaluation(w)["batch_size"],
        device=lambda w: "cuda" if EXPERIMENTS[w.exp]["gpus"] > 0 else "cpu",
        # in params, so that new prompts or another report section re-embed
        prompts=lambda w: shlex.quote(json.dumps(_wider(w, "zeroshot").get("prompts") or {}, sort_keys=True)),
        report_section=lambda w: _wider(w, "report_retrieval").get("section", "impression")
        if _enabled(w, "report_retrieval")
        else "none",
        code=CODE["evaluate"],
    threads: 2
    resources:
        gpu=lambda w: min(1, EXPERIMENTS[w.exp]["gpus"]),
        mem_mb=8000,
        runtime=60,
    log:
        log_path("embed", "{exp}"),
    benchmark:
        bench_path("embed", "{exp}")
    shell:
        "txtrayalign embed --model-dir {params.model_dir} --images-index {input.images}"
        " --images-table {input.images_table}"
        " --split {input.split} --sentences {input.sentences} --sections {input.sections}"
        " --query-split {params.query_split} --bank-splits {params.bank_splits} {params.dedupe}"
        " --dtype {params.dtype} --batch-size {params.batch_size} --device {params.device}"
        " --prompts {params.prompts} --report-section {params.report_section}"
        " --out-queries {output.queries} --out-bank {output.bank} --log {log}"


rule evaluate_experiment:
    """Image-to-text retrieval metrics with bootstrap intervals and baselines, for one experiment."""
    conda:
        "../../envs/train.yaml"
    input:
        queries=RESULTS / "embeddings" / "{exp}" / "queries.h5",
        bank=RESULTS / "embeddings" / "{exp}" / "bank.h5",
        report_labels=RESULTS / "labels" / "reports.parquet",
        sentence_labels=RESULTS / "labels" / "sentences.parquet",
        sentences=RESULTS / "text" / "sentences.parquet",
        sections=RESULTS / "text" / "sections.parquet",
        images=image_dir() / "index.parquet",
    output:
        metrics=RESULTS / "eval" / "{exp}" / "metrics.json",
        predictions=RESULTS / "eval" / "{exp}" / "predictions.parquet",
        f1=report(
            RESULTS / "eval" / "{exp}" / "f1_by_observation.png",
            caption="../report/f1_by_observation.rst",
            category="Evaluation",
            subcategory="{exp}",
        ),
        pr=report(
            RESULTS / "eval" / "{exp}" / "precision_recall_vs_k.png",
            caption="../report/precision_recall_vs_k.rst",
            category="Evaluation",
            subcategory="{exp}",
        ),
        baselines=report(
            RESULTS / "eval" / "{exp}" / "model_vs_baselines.png",
            caption="../report/model_vs_baselines.rst",
            category="Evaluation",
            subcategory="{exp}",
        ),
        zeroshot=report(
            RESULTS / "eval" / "{exp}" / "zeroshot.png",
            caption="../report/zeroshot.rst",
            category="Evaluation",
            subcategory="{exp}",
        ),
        gallery=report(
            RESULTS / "eval" / "{exp}" / "gallery.html",
            caption="../report/gallery.rst",
            category="Examples",
            subcategory="{exp}",
        ),
    params:
        k=lambda w: " ".join(str(k) for k in evaluation(w)["k"]),
        bootstrap=lambda w: evaluation(w)["bootstrap"],
        seed=lambda w: evaluation(w)["seed"],
        query_labels=lambda w: evaluation(w).get("query_labels", "report"),
        sample=lambda w: f"--sample {evaluation(w)['sample']}" if evaluation(w)["sample"] else "",
        gallery=lambda w: evaluation(w)["gallery"],
        out_dir=lambda w: RESULTS / "eval" / w.exp,
        summary_k=config["summary"]["k"],
        zeroshot=lambda w: (
            f"--zeroshot-uncertain {_wider(w, 'zeroshot').get('uncertain', 'exclude')}"
            f" --zeroshot-blank {_wider(w, 'zeroshot').get('blank', 'negative')}"
            if _enabled(w, "zeroshot")
            else "--no-zeroshot"
        ),
        report_k=lambda w: " ".join(str(k) for k in _wider(w, "report_retrieval").get("k", [1]))
        if _enabled(w, "report_retrieval")
        else "",
        reference=lambda w: _wider(w, "text_metrics").get("reference_section", "impression")
        if _enabled(w, "text_metrics")
        else "none",
        bertscore=lambda w: f"--bertscore-model {_wider(w, 'text_metrics')['bertscore_model']}"
        if _wider(w, "text_metrics").get("bertscore_model")
        else "",
        sensitivity=lambda w: (
            _chexbert_args(w) + " " + _official_labels()
            if _enabled(w, "sensitivity")
            else "--no-sensitivity"
        ),
        report_labels_name="official" if config["labels"].get("source", "labeller") == "official" else "chexpert",
        code=CODE["evaluate"] + CODE["label"] + code_fingerprint("chexbert"),
    threads: 2
    resources:
        mem_mb=8000,
        runtime=30,
    log:
        log_path("evaluate", "{exp}"),
    benchmark:
        bench_path("evaluate", "{exp}")
    shell:
        "txtrayalign evaluate --queries {input.queries} --bank {input.bank}"
        " --report-labels {input.report_labels} --sentence-labels {input.sentence_labels}"
        " --sentences {input.sentences} --sections {input.sections} --images-index {input.images}"
        " --query-labels {params.query_labels} --k {params.k}"
        " --bootstrap {params.bootstrap} --seed {params.seed} {params.sample}"
        " --gallery {params.gallery} --summary-k {params.summary_k} {params.zeroshot}"
        " --report-k {params.report_k} --reference-section {params.reference} {params.bertscore}"
        " --report-labels-name {params.report_labels_name} {params.sensitivity}"
        " --out-dir {params.out_dir} --log {log}"


rule summarize:
    """The table across experiments (the earlier work's Table 5, with confidence intervals)."""
    conda:
        "../../envs/train.yaml"
    input:
        expand(RESULTS / "eval" / "{exp}" / "metrics.json", exp=EXPERIMENTS),
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
        "txtrayalign summarize --metrics {input} --k {params.k} --out-csv {output.csv}"
        " --out-md {output.md} --log {log}"
