# Reports: sections and sentences, then CheXpert labels for reports and sentences.

from txtrayalign.rule_args import label_options


rule sections:
    """Report sections, the text to label, the training text and its sentences."""
    conda:
        "../../envs/text.yaml"
    input:
        DS / "index" / "studies.parquet",
    output:
        sections=DS / "text" / "sections.parquet",
        sentences=DS / "text" / "sentences.parquet",
        problems=DS / "text" / "problems.parquet",
        # what decided the sentences (checks.smk: k against the bank's size in the dry run)
        record=DS / "text" / "sentences.record.json",
    params:
        root=lambda w: Path(ds(w)["root"]),
        # `default` resolved by the dataset's format (settings.train_section): a change reruns this
        train_section=lambda w: settings.train_section(config["text"], ds(w)),
        max_empty_share=lambda w: settings.max_empty_share(config["text"], ds(w)),
        code=CODE["text"],
        record=lambda w: text_record(w.dataset),
    resources:
        mem_mb=4000,
        runtime=30,
    log:
        log_path("sections", results=DS),
    benchmark:
        bench_path("sections", results=DS)
    shell:
        "txtrayalign sections --studies {input:q} --root {params.root:q}"
        " --train-section {params.train_section} --max-empty-share {params.max_empty_share}"
        " --out-sections {output.sections:q}"
        " --out-sentences {output.sentences:q} --out-problems {output.problems:q} --log {log:q}"
        " && printf '%s\\n' {params.record:q} > {output.record:q}"


rule label:
    """CheXpert-style labels (1 / 0 / -1 / blank) for every report and every sentence, by our labeller
    or CheXbert (labels.labeller)."""
    conda:
        # CheXbert runs a BERT model: the training environment has torch and transformers
        "../../envs/train.yaml" if config["labels"]["labeller"] == "chexbert" else "../../envs/text.yaml"
    input:
        sections=DS / "text" / "sections.parquet",
        sentences=DS / "text" / "sentences.parquet",
    output:
        reports=DS / "labels" / "reports.parquet",
        sentences=DS / "labels" / "sentences.parquet",
    params:
        official=lambda w: official_labels(w.dataset),
        labeller=label_options(config["labels"]),
        code=CODE["label"],
    threads: 4
    resources:
        mem_mb=4000,
        runtime=30,
    log:
        log_path("label", results=DS),
    benchmark:
        bench_path("label", results=DS)
    shell:
        "txtrayalign label --sections {input.sections:q} --sentences {input.sentences:q}"
        " {params.official} {params.labeller} --workers {threads} --out-reports {output.reports:q}"
        " --out-sentences {output.sentences:q} --log {log:q}"
