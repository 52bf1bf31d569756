# The dataset: the built-in synthetic one (when enabled), its index, and patient-level splits.
import shlex


rule synth:
    """Write the built-in synthetic dataset in the MIMIC-CXR(-JPG) layout."""
    conda:
        "../../envs/preprocess.yaml"
    output:
        synth_outputs(),
    params:
        root=DATA_ROOT,
        studies=SYNTH["studies"],
        seed=SYNTH["seed"],
        format=SYNTH["format"],
        image_size=SYNTH["image_size"],
        faults="--faults" if SYNTH["faults"] else "",
        code=CODE["synth"],
    threads: 8
    resources:
        mem_mb=4000,
        runtime=60,
    log:
        log_path("synth"),
    benchmark:
        bench_path("synth")
    shell:
        "txtrayalign synth --out {params.root} --studies {params.studies} --seed {params.seed}"
        " --format {params.format} --image-size {params.image_size} {params.faults}"
        " --workers {threads} > {log} 2>&1"


rule index:
    """Index the dataset root: images, studies and the problems between tables and disk."""
    conda:
        "../../envs/preprocess.yaml"
    input:
        synth_outputs(),
    output:
        images=RESULTS / "index" / "images.parquet",
        studies=RESULTS / "index" / "studies.parquet",
        problems=RESULTS / "index" / "problems.parquet",
    params:
        root=DATA_ROOT,
        format=DATASET["format"],
        table=" ".join(  # format table: the file and its column names
            [f"--table {shlex.quote(DATASET['table']['file'])}"]
            + [shlex.quote(f"--column={r}={c}") for r, c in DATASET["table"].get("columns", {}).items()]
        ) if DATASET.get("format") == "table" else "",
        out_dir=RESULTS / "index",
        code=CODE["index"],
    resources:
        mem_mb=8000,
        runtime=30,
    log:
        log_path("index"),
    benchmark:
        bench_path("index")
    shell:
        "txtrayalign index --root {params.root} --format {params.format} {params.table}"
        " --out-dir {params.out_dir} --log {log}"


rule split:
    """A patient-level subset of the training patients; validate and test stay whole."""
    conda:
        "../../envs/train.yaml"
    input:
        RESULTS / "index" / "images.parquet",
    output:
        RESULTS / "splits" / "{subset}.parquet",
    params:
        fraction=lambda w: config["splits"]["subsets"][w.subset],
        seed=config["splits"]["seed"],
        code=CODE["split"],
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        log_path("split", "{subset}"),
    shell:
        "txtrayalign split --images {input} --fraction {params.fraction} --seed {params.seed}"
        " --out {output} --log {log}"
