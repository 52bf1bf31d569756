# Images: one HDF5 shard per MIMIC group (p10 … p19, optionally split further), then one index.


rule images:
    """Decode and resize one shard's images (DICOM, JPG, PNG) into HDF5; unreadable files are listed."""
    conda:
        "../../envs/preprocess.yaml"
    input:
        DS / "index" / "images.parquet",
    output:
        h5=DS / "images" / "{size}" / "{shard}.h5",
        skipped=DS / "images" / "{size}" / "{shard}.skipped.parquet",
    wildcard_constraints:
        size=r"\d+",
        shard=r"p1\d(-\d+of\d+)?",
    params:
        root=lambda w: Path(ds(w)["root"]),
        group=lambda w: w.shard.split("-")[0],
        part=lambda w: w.shard.split("-")[1].split("of")[0] if "-" in w.shard else 1,
        parts=lambda w: w.shard.split("of")[1] if "-" in w.shard else 1,
        resize_mode=config["images"]["resize_mode"],
        window=config["images"]["window"],
        compression=config["images"]["compression"],
        max_skipped=config["images"]["max_skipped_share"],
        code=CODE["images"],
    threads: 4
    resources:
        mem_mb=4000,
        runtime=120,
    log:
        log_path("images", "{size}", "{shard}", results=DS),
    benchmark:
        bench_path("images", "{size}", "{shard}", results=DS)
    shell:
        "txtrayalign images --index {input:q} --root {params.root:q} --shard {params.group}"
        " --part {params.part} --parts {params.parts} --size {wildcards.size}"
        " --resize-mode {params.resize_mode} --window {params.window}"
        " --compression {params.compression} --workers {threads}"
        " --max-skipped-share {params.max_skipped} --out {output.h5:q} --skipped {output.skipped:q}"
        " --log {log:q}"


rule merge_images:
    """One view of every shard (dicom_id -> shard, row) without copying pixels."""
    conda:
        "../../envs/preprocess.yaml"
    input:
        h5=expand(DS_PATTERN / "images" / "{{size}}" / "{shard}.h5", shard=SHARDS),
        skipped=expand(DS_PATTERN / "images" / "{{size}}" / "{shard}.skipped.parquet", shard=SHARDS),
    output:
        index=DS / "images" / "{size}" / "index.parquet",
        skipped=DS / "images" / "{size}" / "skipped.parquet",
    wildcard_constraints:
        size=r"\d+",
    params:
        code=CODE["images"],
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        log_path("merge_images", "{size}", results=DS),
    shell:
        "txtrayalign merge-images --shards {input.h5:q} --skipped {input.skipped:q}"
        " --out-index {output.index:q} --out-skipped {output.skipped:q} --log {log:q}"
