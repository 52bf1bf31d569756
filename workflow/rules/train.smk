# Contrastive training, one job per experiment. A rerun of a failed job resumes from last.pt.


rule train:
    """Train one experiment's image and text encoders (CLIP-style InfoNCE)."""
    conda:
        "../../envs/train.yaml"
    input:
        images=image_dir() / "index.parquet",
        sentences=RESULTS / "text" / "sentences.parquet",
        sections=RESULTS / "text" / "sections.parquet",
        split=lambda w: RESULTS / "splits" / f"{EXPERIMENTS[w.exp]['subset']}.parquet",
    output:
        best=RESULTS / "models" / "{exp}" / "best.pt",
        history=RESULTS / "models" / "{exp}" / "history.csv",
        curves=report(
            RESULTS / "models" / "{exp}" / "curves.png",
            caption="../report/curves.rst",
            category="Training",
            subcategory="{exp}",
        ),
    params:
        launcher=train_launcher,
        experiment=experiment_json,
        out_dir=lambda w: model_dir(w.exp),
        device=lambda w: "cuda" if EXPERIMENTS[w.exp]["gpus"] > 0 else "cpu",
        code=CODE["train"],
    # train.threads: the CPU threads torch uses, part of the run's identity (the weights depend on it);
    # Snakemake caps this at --cores, and training still uses train.threads (the same model anywhere)
    threads: lambda w: max(EXPERIMENTS[w.exp]["train"]["threads"], EXPERIMENTS[w.exp]["gpus"] * EXPERIMENTS[w.exp]["cpus_per_gpu"])
    resources:
        gpu=lambda w: EXPERIMENTS[w.exp]["gpus"],
        nodes=1,  # several GPUs train with torchrun on one node
        gpu_model=lambda w: EXPERIMENTS[w.exp]["gpu_model"] or "",
        cpus_per_gpu=lambda w: EXPERIMENTS[w.exp]["cpus_per_gpu"] if EXPERIMENTS[w.exp]["gpus"] else 0,
        mem_mb=lambda w: EXPERIMENTS[w.exp]["mem_mb"],
        runtime=lambda w: EXPERIMENTS[w.exp]["runtime"],
    log:
        log_path("train", "{exp}"),
    benchmark:
        bench_path("train", "{exp}")
    shell:
        "{params.launcher} train --experiment-json {params.experiment:q}"
        " --images-index {input.images:q} --sentences {input.sentences:q} --sections {input.sections:q}"
        " --split {input.split:q} --out-dir {params.out_dir:q} --device {params.device}"
        " --log {log:q}"
