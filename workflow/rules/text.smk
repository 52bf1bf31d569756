# Reports: sections and sentences, then CheXpert labels for reports and sentences.

from txtrayalign.evaluate.rule_args import label_options


rule sections:
    """Report sections, the text to label, the training text and its sentences."""
    conda:
        "../../envs/text.yaml"
    input:
        RESULTS / "index" / "studies.parquet",
    output:
        sections=RESULTS / "text" / "sections.parquet",
        sentences=RESULTS / "text" / "sentences.parquet",
        problems=RESULTS / "text" / "problems.parquet",
    params:
        root=DATA_ROOT,
        train_section=config["text"]["train_section"],
        code=CODE["text"],
    resources:
        mem_mb=4000,
        runtime=30,
    log:
        log_path("sections"),
    benchmark:
        bench_path("sections")
    shell:
        "txtrayalign sections --studies {input} --root {params.root}"
        " --train-section {params.train_section} --out-sections {output.sections}"
        " --out-sentences {output.sentences} --out-problems {output.problems} --log {log}"


rule label:
    """CheXpert-style labels (1 / 0 / -1 / blank) for every report and every sentence, by our labeller
    or CheXbert (labels.labeller)."""
    conda:
        "../../envs/text.yaml"
    input:
        sections=RESULTS / "text" / "sections.parquet",
        sentences=RESULTS / "text" / "sentences.parquet",
    output:
        reports=RESULTS / "labels" / "reports.parquet",
        sentences=RESULTS / "labels" / "sentences.parquet",
    params:
        official=(
            f"--official {RESULTS / 'index' / 'labels.csv.gz'}"  # format table: the table's labels
            if DATASET["format"] == "table" and config["labels"]["source"] == "official"
            else f"--official {DATA_ROOT / 'mimic-cxr-2.0.0-chexpert.csv.gz'}"
            if config["labels"]["source"] == "official"
            else ""
        ),
        labeller=label_options(config["labels"]),
        code=CODE["label"] + code_fingerprint("txtrayalign.chexbert"),
    threads: 4
    resources:
        mem_mb=4000,
        runtime=30,
    log:
        log_path("label"),
    benchmark:
        bench_path("label")
    shell:
        "txtrayalign label --sections {input.sections} --sentences {input.sentences}"
        " {params.official} {params.labeller} --workers {threads} --out-reports {output.reports}"
        " --out-sentences {output.sentences} --log {log}"
