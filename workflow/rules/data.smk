# The dataset: the built-in synthetic one (when enabled), its index, and patient-level splits.


# One synth rule per dataset with `synthetic.enabled` (`synth` for the training dataset).
for _name in [n for n, d in DATASETS.items() if d["synthetic"]["enabled"]]:

    rule:
        """Write the built-in synthetic dataset in the MIMIC-CXR(-JPG) layout."""
        name:
            "synth" if _name == MAIN else f"synth_{_name}"
        conda:
            "../../envs/preprocess.yaml"
        output:
            synth_outputs(_name),
        params:
            root=Path(DATASETS[_name]["root"]),
            studies=DATASETS[_name]["synthetic"]["studies"],
            seed=DATASETS[_name]["synthetic"]["seed"],
            format=DATASETS[_name]["synthetic"]["format"],
            image_size=DATASETS[_name]["synthetic"]["image_size"],
            faults="--faults" if DATASETS[_name]["synthetic"]["faults"] else "",
            disparity=(
                f"--disparity {shlex.quote(DATASETS[_name]['synthetic']['disparity'])}"
                f" --disparity-scale {DATASETS[_name]['synthetic']['disparity_scale']}"
                if DATASETS[_name]["synthetic"]["disparity"]
                else ""
            ),
            code=CODE["synth"],
        threads: 8
        resources:
            mem_mb=4000,
            runtime=60,
        log:
            log_path("synth", results=RESULTS_ROOT / _name),
        benchmark:
            bench_path("synth", results=RESULTS_ROOT / _name)
        shell:
            "txtrayalign synth --out {params.root:q} --studies {params.studies} --seed {params.seed}"
            " --format {params.format} --image-size {params.image_size} {params.faults} {params.disparity}"
            " --workers {threads} > {log:q} 2>&1"


rule index_dataset:
    """Index the dataset root: images, studies and the problems between tables and disk."""
    conda:
        "../../envs/preprocess.yaml"
    input:
        lambda w: synth_outputs(w.dataset),
    output:
        images=DS / "index" / "images.parquet",
        studies=DS / "index" / "studies.parquet",
        problems=DS / "index" / "problems.parquet",
    params:
        root=lambda w: Path(ds(w)["root"]),
        format=lambda w: ds(w)["format"],
        table=lambda w: table_arguments(ds(w)),
        out_dir=lambda w: RESULTS_ROOT / w.dataset / "index",
        code=CODE["index"],
    resources:
        mem_mb=8000,
        runtime=30,
    log:
        log_path("index", results=DS),
    benchmark:
        bench_path("index", results=DS)
    shell:
        "txtrayalign index --root {params.root:q} --format {params.format} {params.table}"
        " --out-dir {params.out_dir:q} --log {log:q}"


rule split:
    """A patient-level subset of the training patients; validate and test stay whole."""
    conda:
        "../../envs/train.yaml"
    input:
        DS / "index" / "images.parquet",
    output:
        DS / "splits" / "{subset}.parquet",
    params:
        fraction=lambda w: config["splits"]["subsets"][w.subset],
        seed=config["splits"]["seed"],
        code=CODE["split"],
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        log_path("split", "{subset}", results=DS),
    shell:
        "txtrayalign split --images {input:q} --fraction {params.fraction} --seed {params.seed}"
        " --out {output:q} --log {log:q}"
