"""A sweep's selection on validation and its report on test, with seeds as uncertainty.

`select_setting` reads every point's validation metrics.json (the evaluation's headline retrieval
scores on the validation queries), averages the chosen metric over each setting's seeds and picks the
setting with the highest mean (ties: the first setting name in sorted order). `sweep_report` adds
the chosen setting's test metrics (all its seeds, each with its bootstrap interval over queries)
and the interval over seeds (Student's t on the seeds' values, `seed_statistics`). Every number
carries the split it comes from. `sensitivity_tables` / `write_sensitivity_plot`: the validation
metric against each swept key's values, one line per combination of the other keys, seed spread
(one standard deviation) as a band.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from txtrayalign.utils import atomic_path

from . import EvaluationInputError
from .bootstrap import interval_cell
from .summary import TITLES, load_metrics

HEADLINE = ("flat_hit", "precision", "recall", "f1")


def headline_entry(metrics: dict, name: str, k: int, source: str) -> dict:
    """methods.model.k[k][name] of a metrics.json: {"value", "ci_low", "ci_high"}."""
    entry = metrics.get("methods", {}).get("model", {}).get("k", {}).get(str(k), {}).get(name)
    if entry is None:
        raise EvaluationInputError(f"{source}: no model {name} at k={k} (evaluated k: {metrics.get('k')})")
    return entry


def seed_statistics(values) -> dict:
    """Mean, sample standard deviation and 95% Student-t interval of the mean over seeds (n, too).

    With one seed the spread and interval are unknown (NaN): one run says nothing about seed noise.
    """
    x = np.asarray([v for v in values if v is not None and not pd.isna(v)], dtype=float)
    n = len(x)
    out = {"n_seeds": n, "mean": float(x.mean()) if n else np.nan, "sd": np.nan, "seed_ci_low": np.nan, "seed_ci_high": np.nan}
    if n >= 2:
        sd = float(x.std(ddof=1))
        half = float(stats.t.ppf(0.975, n - 1)) * sd / np.sqrt(n)
        out.update(sd=sd, seed_ci_low=out["mean"] - half, seed_ci_high=out["mean"] + half)
    return out


def metrics_by_experiment(metrics_paths: list[str]) -> dict[str, tuple[dict, str]]:
    """experiment -> (metrics.json, its path), the experiment as recorded in the file."""
    out = {}
    for path in metrics_paths:
        m = load_metrics(path)
        out[m.get("experiment") or Path(path).parent.name] = (m, str(path))
    return out


def point_scores(points: list[dict], by_exp: dict[str, tuple[dict, str]], metric: str, k: int, split: str) -> pd.DataFrame:
    """One row per point (sweep, setting, seed, experiment, swept values) with the metric's value and
    bootstrap interval from its metrics (`by_exp`: experiment -> (metrics, where they come from))."""
    rows = []
    for point in points:
        if point["experiment"] not in by_exp:
            raise EvaluationInputError(f"no {split} metrics given for sweep point {point['experiment']}")
        m, source = by_exp[point["experiment"]]
        entry = headline_entry(m, metric, k, source)
        rows.append({**point, "split": split, "metric": metric, "k": k, "n_queries": m.get("n_queries"),
                     "value": entry["value"], "ci_low": entry.get("ci_low"), "ci_high": entry.get("ci_high")})
    return pd.DataFrame(rows)


def setting_table(scores: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per setting: its swept values and the seed statistics of `value`."""
    rows = []
    for setting, group in scores.groupby("setting", sort=True):
        rows.append({"setting": setting, **{k: group.iloc[0][k] for k in keys},
                     "split": group.iloc[0]["split"], **seed_statistics(group["value"])})
    return pd.DataFrame(rows)


def select_setting(sweep: dict, by_exp: dict[str, tuple[dict, str]]) -> dict:
    """The selection record: every point's validation score, each setting's seed statistics, the choice
    (`by_exp`: experiment -> (its validation metrics, where they come from))."""
    metric, k = sweep["metric"], sweep["k"]
    scores = point_scores(sweep["points"], by_exp, metric, k, "validate")
    table = setting_table(scores, sweep["keys"])
    best = table.sort_values(["mean", "setting"], ascending=[False, True], kind="stable").iloc[0]
    return {
        "sweep": sweep["name"], "metric": metric, "k": k, "split": "validate", "keys": sweep["keys"],
        "chosen": best["setting"],
        "chosen_experiments": [p["experiment"] for p in sweep["points"] if p["setting"] == best["setting"]],
        "settings": json.loads(table.to_json(orient="records")),
        "points": json.loads(scores.to_json(orient="records")),
    }


def test_table(selection: dict, metrics_paths: list[str]) -> pd.DataFrame:
    """The chosen setting's test metrics: one row per (seed, metric), each with its bootstrap interval."""
    points = [p for p in selection["points"] if p["setting"] == selection["chosen"]]
    points = [{c: p[c] for c in ("sweep", "setting", "seed", "experiment", *selection["keys"])} for p in points]
    by_exp = metrics_by_experiment(metrics_paths)
    parts = [point_scores(points, by_exp, name, selection["k"], "test") for name in HEADLINE]
    return pd.concat(parts, ignore_index=True)


def _label(key: str, value) -> str:
    return f"{key.rsplit('.', 1)[-1]}={value}"


def _others(table: pd.DataFrame, key: str, keys: list[str]) -> pd.Series:
    others = [k for k in keys if k != key]
    if not others:
        return pd.Series(["all"] * len(table), index=table.index)
    return table[others].astype(str).apply(lambda r: ", ".join(_label(k, r[k]) for k in others), axis=1)


def _sort_values(values) -> list:
    unique = list(dict.fromkeys(values))
    try:
        return sorted(unique)
    except TypeError:
        return sorted(unique, key=str)


def sensitivity_tables(settings: pd.DataFrame, keys: list[str]) -> dict[str, pd.DataFrame]:
    """Per swept key: rows its values, columns the other keys' combinations, cells `mean ± sd`."""
    out = {}
    for key in keys:
        t = settings.assign(others=_others(settings, key, keys), value=settings[key].astype(str))
        t["cell"] = [f"{m:.3f}" if pd.isna(s) else f"{m:.3f} ± {s:.3f}" for m, s in zip(t["mean"], t["sd"], strict=True)]
        wide = t.pivot_table(index="value", columns="others", values="cell", aggfunc="first")
        order = [str(v) for v in _sort_values(settings[key])]
        out[key] = wide.reindex(order).fillna("–")
    return out


def _x_positions(values: pd.Series) -> tuple[np.ndarray, list, bool]:
    """Numeric keys at their values (log axis when they span a factor of 10 or more), others at 0..n-1."""
    order = _sort_values(values)
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in order)
    if numeric:
        x = values.astype(float).to_numpy()
        return x, order, min(order) > 0 and max(order) / min(order) >= 10
    index = {str(v): i for i, v in enumerate(order)}
    return np.array([index[str(v)] for v in values]), order, False


def write_sensitivity_plot(settings: pd.DataFrame, keys: list[str], title: str, path: str | Path) -> Path:
    """One panel per swept key: the metric against its values, a line per other-key combination,
    the seed spread (±1 sd) as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        x, order, log_x = _x_positions(settings[key])
        t = settings.assign(x=x, others=_others(settings, key, keys))
        for label, line in t.groupby("others", sort=True):
            line = line.sort_values("x")
            ax.plot(line["x"], line["mean"], marker="o", label=label)
            sd = line["sd"].fillna(0.0)
            ax.fill_between(line["x"], line["mean"] - sd, line["mean"] + sd, alpha=0.2)
        if log_x:
            ax.set_xscale("log")
        if not all(isinstance(v, (int, float)) for v in order):
            ax.set_xticks(range(len(order)), [str(v) for v in order], rotation=20)
        ax.set_xlabel(key)
        ax.set_ylabel(title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)


def _seed_cells(stats_row: dict) -> tuple[str, str]:
    """(`mean ± sd`, `[low, high]` over seeds), `n/a` parts with one seed."""
    mean, sd = stats_row["mean"], stats_row["sd"]
    spread = f"{mean:.3f}" if pd.isna(sd) else f"{mean:.3f} ± {sd:.3f}"
    low, high = stats_row["seed_ci_low"], stats_row["seed_ci_high"]
    return spread, ("n/a (one seed)" if pd.isna(low) else f"[{low:.3f}, {high:.3f}]")


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|",
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)]


def validation_section(selection: dict, title: str) -> list[str]:
    keys = selection["keys"]
    rows = []
    for s in selection["settings"]:
        spread, interval = _seed_cells(s)
        rows.append([s["setting"], *(s[k] for k in keys), s["n_seeds"], spread, interval,
                     "**chosen**" if s["setting"] == selection["chosen"] else ""])
    return [f"## Validation: every setting (split: validate, {title})", "",
            *_markdown_table(["setting", *keys, "seeds", f"{title} mean ± sd", "95% interval over seeds", ""], rows)]


def test_section(selection: dict, test: pd.DataFrame) -> list[str]:
    k = selection["k"]
    names = [TITLES[n].format(k=k) for n in HEADLINE]
    wide = {n: test[test["metric"] == n].set_index("experiment") for n in HEADLINE}
    rows = []
    for exp in wide[HEADLINE[0]].index:
        first = wide[HEADLINE[0]].loc[exp]
        rows.append([first["seed"], exp, first["n_queries"],
                     *(interval_cell(wide[n].loc[exp, "value"], wide[n].loc[exp, "ci_low"], wide[n].loc[exp, "ci_high"]) for n in HEADLINE)])
    per_metric = [_seed_cells(seed_statistics(wide[n]["value"])) for n in HEADLINE]
    rows.append(["mean ± sd over seeds", "", "", *(c[0] for c in per_metric)])
    rows.append(["95% interval over seeds", "", "", *(c[1] for c in per_metric)])
    return [f"## Test: the chosen setting only (split: test, k={k})", "",
            "Per seed: value [95% bootstrap interval over the test queries]; below, the spread and the "
            "95% Student-t interval of the mean over seeds.", "",
            *_markdown_table(["seed", "experiment", "test queries", *names], rows)]


def sensitivity_section(selection: dict, title: str, plot_name: str) -> list[str]:
    settings = pd.DataFrame(selection["settings"])
    lines = [f"## Sensitivity (split: validate, {title}, mean ± sd over seeds)", "", f"![sensitivity]({plot_name})", ""]
    for key, table in sensitivity_tables(settings, selection["keys"]).items():
        rows = [[value, *table.loc[value]] for value in table.index]
        lines += [f"### {key}", "", *_markdown_table([key, *table.columns], rows), ""]
    return lines


def sweep_markdown(selection: dict, test: pd.DataFrame, plot_name: str) -> str:
    title = TITLES[selection["metric"]].format(k=selection["k"])
    chosen = next(s for s in selection["settings"] if s["setting"] == selection["chosen"])
    values = ", ".join(f"{k} = {chosen[k]}" for k in selection["keys"])
    lines = [
        f"# Sweep {selection['sweep']}: chosen on validation, reported on test", "",
        f"Selection rule: the setting with the highest mean validation {title} over its seeds "
        f"(ties: the first setting name). The test split was used for the chosen setting only.", "",
        f"Chosen: **{selection['chosen']}** ({values}).", "",
        *validation_section(selection, title), "", *test_section(selection, test), "",
        *sensitivity_section(selection, title, plot_name),
    ]
    return "\n".join(lines).rstrip() + "\n"


def write_selection(selection: dict, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(selection, indent=2, sort_keys=True) + "\n")
    return Path(path)


def write_sweep_report(selection: dict, test_metrics: list[str], out_csv, out_md, out_png) -> pd.DataFrame:
    """summary.csv (every number with its split and interval kind), summary.md and the sensitivity plot."""
    test = test_table(selection, test_metrics)
    validation = pd.DataFrame(selection["points"])
    rows = pd.concat([validation, test], ignore_index=True)
    rows["interval"] = "bootstrap over queries"
    per_setting = pd.DataFrame(selection["settings"]).assign(metric=selection["metric"], k=selection["k"])
    chosen = [{"setting": selection["chosen"], "split": "test", "metric": n, "k": selection["k"],
               **seed_statistics(test.loc[test["metric"] == n, "value"])} for n in HEADLINE]
    seeds = pd.concat([per_setting, pd.DataFrame(chosen)], ignore_index=True)
    seeds = seeds.rename(columns={"mean": "value", "seed_ci_low": "ci_low", "seed_ci_high": "ci_high"})
    seeds["seed"], seeds["interval"] = "mean", "t over seeds"
    table = pd.concat([rows, seeds], ignore_index=True).assign(sweep=selection["sweep"])
    first = ["sweep", "split", "setting", "seed", "experiment", "metric", "k", "value", "ci_low", "ci_high", "interval",
             "sd", "n_seeds", "n_queries"]
    table = table[first + [c for c in table.columns if c not in first]]
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    write_sensitivity_plot(pd.DataFrame(selection["settings"]), selection["keys"],
                           f"validation {TITLES[selection['metric']].format(k=selection['k'])}", out_png)
    with atomic_path(out_md) as tmp:
        Path(tmp).write_text(sweep_markdown(selection, test, Path(out_png).name))
    return table
