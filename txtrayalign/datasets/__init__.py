"""The dataset layouts the `index` stage reads into the same tables (`txtrayalign.index`).

- `indexed`: what every layout gives the index (`Indexed`, problem rows, the hash split, shard groups,
  conflicting ids) and the index tables' columns;
- `mimic`: MIMIC-CXR(-JPG) (`dataset.format`: jpg / dcm / png / auto);
- `iu`: the IU X-ray collection (Open-i), original distribution or R2Gen layout (`dataset.format: openi`);
- `table`: any CSV / parquet of image-report pairs (`dataset.format: table`).

`iu` and `table` expose `build(root, ...) -> Indexed`, which the index finishes (shared checks, report
texts written); `mimic.build(root, fmt)` gives the tables themselves.
"""
