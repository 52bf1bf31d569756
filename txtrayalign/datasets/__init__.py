"""Dataset layouts other than MIMIC-CXR, read by the `index` stage into the same tables.

- `iu`: the IU X-ray collection (Open-i), original distribution or R2Gen layout (`dataset.format: openi`);
- `table`: any CSV / parquet of image-report pairs (`dataset.format: table`).

Each exposes `build(root, ...) -> Indexed` (see `txtrayalign.index.Indexed`); the index module writes
the tables and the report texts.
"""
