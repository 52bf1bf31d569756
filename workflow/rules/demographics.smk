# Who the patients are: one row per study (sex, age at the study, race, insurance, a table's groups).


rule demographics:
    """One row per study: the patient's sex, age at the study, race and insurance (README, "For whom it fails")."""
    conda:
        "../../envs/preprocess.yaml"
    input:
        studies=DS / "index" / "studies.parquet",
        images=DS / "index" / "images.parquet",
    output:
        patients=DS / "index" / "patients.parquet",
        record=DS / "index" / "patients.json",
    params:
        root=lambda w: Path(ds(w)["root"]),
        source=lambda w: demographics_arguments(w.dataset),
        code=CODE["demographics"],
    resources:
        mem_mb=4000,
        runtime=10,
    log:
        log_path("demographics", results=DS),
    shell:
        "txtrayalign demographics --studies {input.studies:q} --images {input.images:q} --root {params.root:q}"
        " {params.source} --out {output.patients:q} --log {log:q}"
