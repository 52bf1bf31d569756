"""Image-to-text evaluation: embedding, retrieval, metrics, baselines, protocols, plots and summaries.

Modules:
- `embed`, `embed_cli`: encode query images, query reports, the sentence bank, prompts and the report
  bank into HDF5 files (the `embed` subcommand; apart from evaluation, so its code fingerprint has no
  labeller).
- `inputs`: what an evaluation reads, split by meaning (`Queries`, `SentenceBank`, `ReportBank`,
  `Prompts`, `Truth`; `EvaluationInputs`), each with its loader.
- `context`: the resolved settings (schema defaults), k list, summary k, random streams, `Context`.
- `retrieval`: exact chunked top-k similarity between any two embedding sets.
- `baselines`: random, most-frequent and label-oracle retrieval.
- `labels`: labels of query studies (sentence maximum) and of retrieved text (labeller or combined).
- `scoring`: every method's retrieval over a bank (`Retrieval`) and its scoring, sentences and reports alike.
- `metrics`: hit metrics of the earlier work, report-generation metrics, exact-pair recall.
- `bootstrap`: vectorised percentile confidence intervals over queries.
- `textmetrics`, `zeroshot`, `report_retrieval`, `label_sensitivity`: the measures of the protocols.
- `evaluation`: `evaluate()` — the sentence-level metrics, then each protocol — and the output files.
- `exact_pair`, `text_to_image`, `five_by_200`, `linear_probe`: exact-pair retrieval both ways,
  text-to-image retrieval, CheXpert 5x200 zero-shot classification, linear probing of frozen images.
- `protocols`: the protocols, one module each (`zeroshot`, `text_similarity`, `report_retrieval`,
  `label_sensitivity`, `exact_pair`, `text_to_image`, `five_by_200`, `linear_probe`).
- `plots`, `gallery`, `summary`: figures, the HTML gallery and the cross-experiment table.
- `cli`: the `evaluate` and `summarize` subcommands.
- `subgroups`, `fairness`, `prevalence`, `subgroup_inputs`, `subgroup_report`, `subgroup_plots`: for
  whom it fails — figures per patient group with their gaps, rare against common observations.
- `sweep_scoring`, `sweep_summary`, `sweep_cli`: a sweep point's score on validation, the sweep's
  selection and its report on test (`txtrayalign sweep-select`, `sweep-report`).

Adding an evaluation (a protocol): one module in `txtrayalign/evaluate/protocols/` and one line in
`protocols.PROTOCOLS` (with its import there). The module defines

    NAME: str                                   # its key in metrics.json
    def run(inputs: EvaluationInputs, context: Context) -> dict | None
        # JSON-able result stored as metrics[NAME]; None: not evaluated (switched off, inputs absent)
    def summary_section(runs: list[tuple[str, dict | None]], k: int) -> str
        # its summary.md section ("## Title\n" first) from (experiment, metrics.get(NAME)) of every
        # experiment; k is summary.k
    def summary_columns(result: dict | None, method: str, k: int) -> dict
        # its summary.csv columns of one row (method: model, random, most_frequent, oracle); {} for none
    def figures(result: dict | None, out_dir: Path, experiment: str) -> list[Path]    # optional
        # its PNGs in eval/<exp>/ (declare them as outputs of rule evaluate_experiment)

`inputs` (`inputs.EvaluationInputs`): `queries` (ids, view, embeddings, `labels`, `sections` rows,
report embeddings), `sentence_bank`, `report_bank`, `prompts`, `truth` (labels by labeller),
`validation_queries` (a second `Queries` when the rule passes `--validation-queries`, else None).
`context` (`context.Context`): `settings` (the resolved `evaluation`, `labels` and `summary` blocks;
a protocol reads its own block as `context.evaluation["<key>"]`, declared with its defaults in
txtrayalign/config.schema.yaml and a row in config/README.md — nothing else to wire: the rule passes
the whole block as `--settings`), `ks`, `summary_k`, `seed`, `counts` (the (B, N) bootstrap resample
counts shared by every metric: `bootstrap.point_and_interval(arrays, statistic, context.counts)`), the
text `labeller`, and `sentence_retrieval` ({method: `scoring.Retrieval`}: each method's top-k sentence
rows, `.retrieved_labels(k)`, `.joined(k)`, `.predicted[k]`, the model's `.scores`). A random draw
takes its own stream: `context.rng("<name>")`.
"""

from __future__ import annotations

NONE = ("", "none")


class EvaluationInputError(ValueError):
    """The inputs to embedding or evaluation do not fit together (ids, sizes, k); the message names the files."""


def json_object(text: str, option: str) -> dict:
    """The JSON object an option's value holds; `EvaluationInputError` naming the option otherwise."""
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EvaluationInputError(f"{option}: not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise EvaluationInputError(f"{option}: expected a JSON object, got {text!r}")
    return value


def is_none(value: str | None) -> bool:
    """Whether a setting's value is the "none" sentinel (switched off): None, "" or "none" in any case."""
    return value is None or str(value).strip().lower() in NONE
