# Settings checked against what is already built, so that the dry run fails, naming the key: today the
# retrieval cut-offs `evaluation.k` against the size of the sentence bank, when that size is known.
#
# The bank is built from <results>/<dataset>/text/sentences.parquet (embed_bank keeps the sentences of
# the bank splits, one per distinct text), so that table's row count bounds it from above, and a k
# beyond that count can never be evaluated. The count is known only when the table exists AND this run
# will not rebuild it: the sections job records what decided it (the shell command, parameters and
# inputs of synth, index and sections for that dataset, as Snakemake compares them to decide a rerun)
# in text/sentences.record.json, and the check runs only when that record equals the one of the
# current configuration and every file of that chain exists, older inputs before newer outputs. A run
# that will rebuild the table (a changed dataset or text setting, new code, a forced rerun) is not
# refused here; the evaluate stage then stops with its own message if k is still too large.
import os
from types import SimpleNamespace

from snakemake.io import apply_wildcards


def _upstream_rules(name):
    """The rules that build dataset `name`'s sentences table, in order."""
    synth = [("synth" if name == MAIN else f"synth_{name}")] if DATASETS[name]["synthetic"]["enabled"] else []
    return [workflow.get_rule(r) for r in synth + ["index_dataset", "sections"]]


def _evaluated(value, wildcards):
    value = value(wildcards) if callable(value) else value
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return str(value)


def _files(rule, wildcards, which):
    """Input or output paths of `rule` for `wildcards` (input functions evaluated)."""
    out = []
    for item in getattr(rule, which):
        value = item(wildcards) if callable(item) else item
        for v in value if isinstance(value, (list, tuple)) else [value]:
            out.append(apply_wildcards(str(v), vars(wildcards)))
    return out


def text_record(name):
    """What decides dataset `name`'s sentences table, as JSON: per upstream rule its shell command,
    parameters (all but this record) and inputs. (Not the conda environment: with the same code,
    settings and data the stage writes the same table, so a rebuild for a new environment keeps its size.)"""
    w = SimpleNamespace(dataset=name)
    record = [
        {
            "rule": step.name,
            "shell": step.shellcmd,
            "params": {k: _evaluated(v, w) for k, v in step.params.items() if k != "record"},
            "input": _files(step, w, "input"),
        }
        for step in _upstream_rules(name)
    ]
    return json.dumps(record, sort_keys=True)


# Options that may rebuild the table whatever the record says (Snakemake's settings are not yet known
# while the Snakefile is parsed, so the command line is read).
FORCING_OPTIONS = {"-F", "--forceall", "-f", "--force", "--forcetargets", "-R", "--forcerun", "--rerun-incomplete",
                   "--ri"}


def known_bank_size(name):
    """Rows of `name`'s sentences table when this run will not rebuild it; None when unknown."""
    if FORCING_OPTIONS & {a.split("=", 1)[0] for a in sys.argv}:
        return None
    record = RESULTS_ROOT / name / "text" / "sentences.record.json"
    sentences = RESULTS_ROOT / name / "text" / "sentences.parquet"
    try:
        if record.read_text(encoding="utf-8").strip() != text_record(name):
            return None
        w = SimpleNamespace(dataset=name)
        for step in _upstream_rules(name):
            inputs = [os.stat(f).st_mtime for f in _files(step, w, "input")]
            outputs = [os.stat(f).st_mtime for f in _files(step, w, "output")]
            if inputs and max(inputs) > min(outputs):
                return None
        if any(Path(".snakemake", "incomplete").glob("*")):
            return None  # an interrupted job: Snakemake may rerun it
        import pyarrow.parquet as pq

        return pq.read_metadata(sentences).num_rows
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None  # anything unreadable or unexpected: unknown, never a refusal


def k_key(exp):
    """Where experiment `exp`'s evaluation.k is set: its own block, the defaults, or the schema."""
    if "k" in ((config["experiments"].get(exp) or {}).get("evaluation") or {}):
        return f"experiments.{exp}.evaluation.k"
    if "k" in ((config.get("defaults") or {}).get("evaluation") or {}):
        return "defaults.evaluation.k"
    return "evaluation.k (the schema's default)"


def k_problems():
    sizes, problems = {}, []
    for exp, dataset in EVAL_PAIRS:
        bank = MAIN if EXPERIMENTS[exp]["evaluation"]["bank"] == "source" else dataset
        if bank not in sizes:
            sizes[bank] = known_bank_size(bank)
        k, n = max(EXPERIMENTS[exp]["evaluation"]["k"]), sizes[bank]
        if n is not None and k > n:
            problems.append(
                f"{k_key(exp)} = {EXPERIMENTS[exp]['evaluation']['k']}: k = {k} is larger than the sentence bank of "
                f"{exp} on {dataset}: {RESULTS_ROOT / bank / 'text' / 'sentences.parquet'} holds {n} sentences "
                f"(the bank is at most that many; evaluation.bank_splits and dedupe make it smaller)"
            )
    return problems


_k_problems = k_problems()
if _k_problems:
    stop("config: " + "\n".join(dict.fromkeys(_k_problems)))
