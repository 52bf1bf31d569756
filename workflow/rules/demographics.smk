# Who the patients are: one row per study (sex, age at the study, race, insurance, a table's groups).


def demographics_arguments(name):
    """`txtrayalign demographics` source options of a dataset: MIMIC-IV's folder (given, or the
    synthetic twin's), a table's columns, or why there are none."""
    dataset = DATASETS[name]
    if dataset.get("demographics"):
        return f"--mimic-iv {shlex.quote(str(dataset['demographics']))}"
    if dataset["synthetic"]["enabled"]:
        return f"--mimic-iv {shlex.quote(str(Path(dataset['root']) / 'mimic-iv'))}"
    if dataset.get("format") == "table":
        demo = dataset["table"].get("demographics", {})
        image = dataset["table"].get("columns", {}).get("image", "image")
        columns = [f"--column=image={image}"] + [f"--column={r}={demo[r]}" for r in ("sex", "age", "race") if demo.get(r)]
        groups = [f"--group={g}" for g in demo.get("groups", [])]
        return " ".join([f"--table {shlex.quote(dataset['table']['file'])}"] + [shlex.quote(a) for a in columns + groups])
    why = (
        "IU X-ray has no patient identifiers or demographics"
        if dataset.get("format") == "openi"
        else "no MIMIC-IV folder given (dataset.demographics)"
    )
    return f"--absent {shlex.quote(why)}"


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
