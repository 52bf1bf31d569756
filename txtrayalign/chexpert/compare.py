"""Compare two labellings of the same reports, observation by observation.

Both tables are CheXpert-format CSVs (a column per observation, values 1 / 0 / -1 / blank, optional
`Reports` text column), rows in the same order, or matched on a shared key column. The reference
(B) may use other category names through a mapping (`Pleural Effusion=Effusion`,
`Lung Lesion=Mass+Nodule`: several columns are joined by their maximum); `NEGBIO_MAPPING` is the one
for NegBio's ChestX-ray14 gold standard (binary labels, `normal` for No Finding).

Per observation: the 4 x 4 confusion over 1 / 0 / -1 / blank (A in rows, B in columns; pandas
`crosstab`), the share of agreeing cells, and precision / recall / F1 of "positive" (1) with B as
the reference; over all of them the cell agreement, micro and macro positive F1. Counts come from
pandas; the F1 arithmetic is three lines, so scikit-learn is not needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from txtrayalign.constants import OBSERVATIONS
from txtrayalign.errors import InputError

CLASSES = ("1", "0", "-1", "blank")
REPORTS_COLUMN = "Reports"
NEGBIO_MAPPING: dict[str, tuple[str, ...]] = {
    "Atelectasis": ("Atelectasis",), "Cardiomegaly": ("Cardiomegaly",), "Pleural Effusion": ("Effusion",),
    "Pneumonia": ("Pneumonia",), "Pneumothorax": ("Pneumothorax",), "Consolidation": ("Consolidation",),
    "Edema": ("Edema",), "Lung Lesion": ("Mass", "Nodule"), "No Finding": ("normal",),
}
MAPPINGS = {"negbio": NEGBIO_MAPPING}


def parse_mapping(items: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """`["negbio"]` or `["Pleural Effusion=Effusion", "Lung Lesion=Mass+Nodule"]` -> a mapping."""
    mapping: dict[str, tuple[str, ...]] = {}
    for item in items:
        if item in MAPPINGS:
            mapping.update(MAPPINGS[item])
            continue
        name, sep, columns = item.partition("=")
        if not sep or name.strip() not in OBSERVATIONS or not columns.strip():
            raise InputError(f"--map {item!r}: expected OBSERVATION=COLUMN[+COLUMN...] with one of the 14 "
                             f"CheXpert observations, or one of {sorted(MAPPINGS)}")
        mapping[name.strip()] = tuple(c.strip() for c in columns.split("+") if c.strip())
    return mapping


def read_table(path: str | Path) -> pd.DataFrame:
    """A labelled table (CSV, compressed or not); bad files are an InputError naming them."""
    try:
        return pd.read_csv(path, keep_default_na=True)
    except (FileNotFoundError, IsADirectoryError):
        raise
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"{path}: not a readable CSV table ({str(exc).splitlines()[0]})") from exc


def codes(table: pd.DataFrame, mapping: dict[str, tuple[str, ...]] | None, where: str,
          observations: Sequence[str]) -> pd.DataFrame:
    """The table's labels as codes "1" / "0" / "-1" / "blank", one column per observation."""
    out = {}
    for obs in observations:
        columns = (mapping or {}).get(obs, (obs,)) if mapping is not None else (obs,)
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise InputError(f"{where}: no column {missing[0]!r} (for {obs}); columns are {list(table.columns)}")
        values = table[list(columns)].apply(pd.to_numeric, errors="coerce")
        bad = table[list(columns)].notna() & values.isna()
        bad |= values.notna() & ~values.isin([1, 0, -1])
        if bad.to_numpy().any():
            row, col = np.argwhere(bad.to_numpy())[0]
            raise InputError(f"{where}: column {columns[col]!r} row {row + 1}: "
                             f"{str(table[columns[col]].iloc[row])!r} is not 1, 0, -1 or blank")
        joined = values.max(axis=1, skipna=True)
        out[obs] = joined.map(lambda v: "blank" if pd.isna(v) else str(int(v)))
    return pd.DataFrame(out, index=table.index)


def align(a: pd.DataFrame, b: pd.DataFrame, key: str | None, names: tuple[str, str]) -> tuple[pd.DataFrame,
                                                                                               pd.DataFrame]:
    """Rows of A and B paired: by position (same length) or on a key column present in both."""
    if key is None:
        if len(a) != len(b):
            raise InputError(f"{names[0]} has {len(a)} rows and {names[1]} {len(b)}: compare tables of the "
                             "same reports in the same order, or pass --key COLUMN")
        return a.reset_index(drop=True), b.reset_index(drop=True)
    for table, name in zip((a, b), names, strict=True):
        if key not in table.columns:
            raise InputError(f"{name}: no key column {key!r}")
        if table[key].duplicated().any():
            raise InputError(f"{name}: key {key!r} repeats (first: {table[key][table[key].duplicated()].iloc[0]!r})")
    common = a[[key]].merge(b[[key]], on=key)[key]
    if common.empty:
        raise InputError(f"{names[0]} and {names[1]} share no value of {key!r}")
    a = a.set_index(key).loc[common].reset_index()
    b = b.set_index(key).loc[common].reset_index()
    return a, b


def _f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    return precision, recall, f1


def confusion(a: pd.Series, b: pd.Series) -> pd.DataFrame:
    """4 x 4 counts: A's code in rows, B's in columns, over 1 / 0 / -1 / blank."""
    table = pd.crosstab(pd.Categorical(a, CLASSES), pd.Categorical(b, CLASSES), dropna=False)
    table.index.name, table.columns.name = "A", "B"
    return table.reindex(index=list(CLASSES), columns=list(CLASSES), fill_value=0)


def compare(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per observation of two code tables (see `codes`): agreement and positive P/R/F1 (B the
    reference), with the confusion counts as columns `A=x,B=y`; and the summary figures."""
    rows = []
    tot = np.zeros(3, dtype=np.int64)
    same = 0
    for obs in a.columns:
        m = confusion(a[obs], b[obs])
        tp = int(m.loc["1", "1"])
        fp = int(m.loc["1"].sum()) - tp
        fn = int(m["1"].sum()) - tp
        tot += (tp, fp, fn)
        agree = int(np.trace(m.to_numpy()))
        same += agree
        precision, recall, f1 = _f1(tp, fp, fn)
        row = {"observation": obs, "agreement": agree / len(a) if len(a) else float("nan"),
               "precision": precision, "recall": recall, "f1": f1, "positives_a": tp + fp, "positives_b": tp + fn}
        row.update({f"A={x},B={y}": int(m.loc[x, y]) for x in CLASSES for y in CLASSES})
        rows.append(row)
    per = pd.DataFrame(rows)
    cells = len(a) * len(a.columns)
    summary = {"reports": float(len(a)), "cell_agreement": same / cells if cells else float("nan"),
               "micro_f1": _f1(*map(int, tot))[2], "macro_f1": float(per["f1"].mean(skipna=True))}
    return per, summary


def disagreements(a: pd.DataFrame, b: pd.DataFrame, a_raw: pd.DataFrame, b_raw: pd.DataFrame,
                  key: str | None) -> pd.DataFrame:
    """One row per report where any observation differs: its row number (or key), its text when a
    table has one, and per differing observation `A/B` codes (agreeing ones left blank)."""
    differ = a.ne(b)
    rows = differ.any(axis=1).to_numpy()
    out = pd.DataFrame({"row": np.arange(1, len(a) + 1)[rows]})
    if key is not None:
        out[key] = a_raw[key].to_numpy()[rows]
    for raw in (a_raw, b_raw):
        if REPORTS_COLUMN in raw.columns and REPORTS_COLUMN not in out.columns:
            out[REPORTS_COLUMN] = raw[REPORTS_COLUMN].to_numpy()[rows]
    out["n_differ"] = differ.sum(axis=1).to_numpy()[rows]
    for obs in a.columns:
        pair = (a[obs] + "/" + b[obs]).where(differ[obs], "")
        out[obs] = pair.to_numpy()[rows]
    return out


def format_report(per: pd.DataFrame, summary: dict[str, float], names: tuple[str, str]) -> str:
    """The per-observation table and the summary as text."""
    lines = [f"A = {names[0]}, B = {names[1]} (reference), {int(summary['reports'])} reports: "
             f"cell agreement {summary['cell_agreement']:.3f}, positive F1 micro {summary['micro_f1']:.3f}, "
             f"macro {summary['macro_f1']:.3f}",
             f"{'observation':28s} {'agree':>6s} {'P':>6s} {'R':>6s} {'F1':>6s} {'pos A':>6s} {'pos B':>6s}"
             "   confusion A->B (1,0,-1,blank per row of A)"]
    for r in per.to_dict("records"):
        conf = " | ".join(",".join(str(r[f"A={x},B={y}"]) for y in CLASSES) for x in CLASSES)
        lines.append(f"{r['observation']:28s} {r['agreement']:6.3f} {r['precision']:6.3f} {r['recall']:6.3f} "
                     f"{r['f1']:6.3f} {r['positives_a']:6d} {r['positives_b']:6d}   {conf}")
    return "\n".join(lines)
