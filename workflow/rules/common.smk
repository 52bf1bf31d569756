# Helpers shared by the rules: validated config, experiments, paths, code fingerprints.
import json
import re
import shlex
import sys
from pathlib import Path

import yaml

from snakemake.exceptions import WorkflowError

from txtrayalign import settings
from txtrayalign.constants import GROUPS
from txtrayalign.train.names import experiment_problems, problems_report
from txtrayalign.utils import code_fingerprints


# Rules call the `txtrayalign` command: find it beside the Python running Snakemake (a venv need not
# be activated). With --software-deployment-method conda, the rule's environment comes first.
shell.prefix(f'export PATH={shlex.quote(str(Path(sys.executable).parent))}:"$PATH"; ')


def _retype_command_line(overrides, cfg):
    """Give `--config` values their YAML types: Snakemake passes nested ones on as strings."""
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            _retype_command_line(value, cfg[key])
        elif isinstance(value, str) and isinstance(cfg.get(key), str) and value.strip():
            try:
                cfg[key] = yaml.safe_load(value)
            except yaml.YAMLError as e:
                stop(f"config: --config {key}={value}: not valid YAML: {settings.yaml_problem(e)}")


def stop(message):
    """A mistake in the settings, found while the Snakefile is read: its lines on stderr and exit
    status 1. (A WorkflowError would add the file and line of the check and a traceback frame, which
    say where the check is, not what to change.)"""
    sys.exit(message)


_retype_command_line(workflow.config_settings.config, config)
# One schema with its defaults (txtrayalign/config.schema.yaml), shared with `txtrayalign train`:
# a misspelt key or a wrong value stops here, naming the key (experiments.<name>.train.epoch).
# Every section but dataset and experiments may be left out (or left empty): its defaults apply.
try:
    _given = settings.without_empty_sections(config)
    settings.check_config(_given)
    config.clear()
    config.update(settings.with_defaults(_given))
    EXPERIMENTS = settings.resolve_experiments(config)
except settings.ConfigError as e:
    stop(str(e))


DATASET = config["dataset"]
SYNTH = DATASET["synthetic"]
DATA_ROOT = Path(DATASET["root"])
MAIN = DATASET["name"]
RESULTS_ROOT = Path(config["results"])
RESULTS = RESULTS_ROOT / MAIN  # the training dataset's results: models, summary
# Every dataset by name: the training one and the evaluation-only ones (`datasets`), each with the
# schema's dataset defaults. Their indexes, images, text and labels live under <results>/<name>/.
_dataset_defaults = settings.defaults_of(settings.schema()["definitions"]["dataset"])
if MAIN in config["datasets"]:
    stop(f"config: datasets.{MAIN} has the name of the training dataset (dataset.name)")
DATASETS = {MAIN: DATASET} | {
    name: {**settings.merge(_dataset_defaults, d), "name": name} for name, d in config["datasets"].items()
}
# (experiment, evaluated dataset) pairs: evaluate_on names datasets; unset = the training dataset only.
EVAL_PAIRS = []
for _name, _exp in EXPERIMENTS.items():
    for _ds in _exp["evaluate_on"] or [MAIN]:
        if _ds not in DATASETS:
            stop(
                f"config: experiments.{_name}.evaluate_on names {_ds!r}, which is neither dataset.name "
                f"({MAIN}) nor a key of datasets ({', '.join(config['datasets']) or 'none'})"
            )
        _ev = _exp["evaluation"]
        if _ds != MAIN and _ev["bank"] == "source" and _ev["query_labels"] == "sentence_max":
            stop(
                f"config: experiments.{_name}.evaluation.bank = source with query_labels = sentence_max: the "
                f"{_ds} queries' labels would come from {MAIN}'s sentences; use query_labels: report or bank: target"
            )
        EVAL_PAIRS.append((_name, _ds))


wildcard_constraints:
    dataset="|".join(re.escape(name) for name in DATASETS),


# Encoder names, weights and models checked without data: one line per missing or misspelt model
# (txtrayalign.train.names needs no torch: parsing the Snakefile stays quick).
_encoder_problems = [p for _name, _exp in EXPERIMENTS.items() for p in experiment_problems({**_exp, "name": _name})]
if _encoder_problems:
    stop(f"config: {problems_report(_encoder_problems)}")

SHARDS = (
    GROUPS
    if config["images"]["parts_per_group"] == 1
    else [
        f"{g}-{i}of{config['images']['parts_per_group']}"
        for g in GROUPS
        for i in range(1, config["images"]["parts_per_group"] + 1)
    ]
)

# Fingerprints of the code behind each stage: every txtrayalign module the stage's command imports
# (its import closure, package data such as the labeller's phrase files included). A change reruns
# that stage and what follows it. All at once, each file read once; the files' import scans are kept
# by content hash in .snakemake/, so a dry run parses only the Python files that changed.
STAGE_MODULES = {
    "synth": "txtrayalign.synth.cli",
    "index": "txtrayalign.index",
    "demographics": "txtrayalign.demographics",
    "images": "txtrayalign.images.cli",
    "text": "txtrayalign.text.cli",
    "label": ("txtrayalign.chexpert.cli", "txtrayalign.chexbert"),
    "split": "txtrayalign.splits",
    "train": "txtrayalign.train.cli",
    "embed": "txtrayalign.evaluate.embed_cli",
    # evaluation labels the retrieved sentences (our labeller or CheXbert: the sensitivity table)
    "evaluate": ("txtrayalign.evaluate.cli", "txtrayalign.chexpert.cli", "txtrayalign.chexbert"),
}
CODE = code_fingerprints(STAGE_MODULES, cache=Path(".snakemake") / "txtrayalign-code-scans.json")


# A per-dataset rule's paths: <results>/{dataset}/... (the wildcard: a name from DATASETS).
DS = RESULTS_ROOT / "{dataset}"
DS_PATTERN = RESULTS_ROOT / "{{dataset}}"  # the same inside expand()


def log_path(rule_name, *parts, results=None):
    """`results`: DS in a per-dataset rule (the log beside that dataset's results)."""
    return str((results or RESULTS) / "logs" / rule_name / ("-".join(parts) or rule_name)) + ".log"


def bench_path(rule_name, *parts, results=None):
    return str((results or RESULTS) / "benchmarks" / rule_name / ("-".join(parts) or rule_name)) + ".tsv"


def ds(wildcards):
    """The settings of the dataset a per-dataset job works on."""
    return DATASETS[wildcards.dataset]


def synth_outputs(name=MAIN):
    """The dataset tables, when the pipeline writes the synthetic dataset itself."""
    dataset = DATASETS[name]
    if not dataset["synthetic"]["enabled"]:
        return []
    root = Path(dataset["root"])
    return [root / "cxr-record-list.csv.gz", root / "mimic-cxr-2.0.0-chexpert.csv.gz"]


def table_arguments(dataset):
    """format table: the file and its column names, as `txtrayalign index` options."""
    if dataset.get("format") != "table":
        return ""
    return " ".join(
        [f"--table {shlex.quote(dataset['table']['file'])}"]
        + [shlex.quote(f"--column={r}={c}") for r, c in dataset["table"].get("columns", {}).items()]
    )


def official_labels(name):
    """`--official TABLE` with labels.source official: a table dataset's own label columns, MIMIC's
    CheXpert table; an Open-i dataset has none and is labelled by the labeller."""
    dataset = DATASETS[name]
    if config["labels"]["source"] != "official" or dataset["format"] == "openi":
        return ""
    if dataset["format"] == "table":
        return f"--official {shlex.quote(str(RESULTS_ROOT / name / 'index' / 'labels.csv.gz'))}"
    return f"--official {shlex.quote(str(Path(dataset['root']) / 'mimic-cxr-2.0.0-chexpert.csv.gz'))}"


def image_dir(results=None):
    return (results or RESULTS) / "images" / str(config["images"]["size"])


def model_dir(exp):
    return RESULTS / "models" / exp


def experiment(wildcards):
    return EXPERIMENTS[wildcards.exp]


def experiment_json(wildcards):
    """The experiment's resolved training settings (GPUs included), as the `train` command reads them."""
    return json.dumps(settings.training_settings(EXPERIMENTS[wildcards.exp], wildcards.exp), sort_keys=True)


def query_split_table(wildcards):
    """The table that splits the evaluated dataset: the experiment's subset for the training dataset,
    the whole index (every study with its split) for an evaluation-only one."""
    if wildcards.dataset == MAIN:
        return RESULTS / "splits" / f"{EXPERIMENTS[wildcards.exp]['subset']}.parquet"
    return RESULTS_ROOT / wildcards.dataset / "index" / "images.parquet"


def bank_dir(wildcards):
    """Where the evaluation's sentence bank comes from: the evaluated dataset (`evaluation.bank:
    target`) or the training one (`source`, the bank the self-evaluation embeds)."""
    return RESULTS_ROOT / (MAIN if evaluation(wildcards)["bank"] == "source" else wildcards.dataset)


def eval_metrics():
    return [RESULTS_ROOT / d / "eval" / exp / "metrics.json" for exp, d in EVAL_PAIRS]


def summary_outputs():
    if not EVAL_PAIRS:  # a config of sweeps only: each sweep has its own summary (sweeps.smk)
        return []
    return [RESULTS / "eval" / "summary.csv", RESULTS / "eval" / "summary.md"]


def train_launcher(wildcards):
    """`txtrayalign`, or torchrun over the experiment's GPUs on one node when it asks for several."""
    gpus = EXPERIMENTS[wildcards.exp]["gpus"]
    if gpus > 1:
        return f"torchrun --standalone --nproc_per_node {gpus} -m txtrayalign"
    return "txtrayalign"


def evaluation(wildcards):
    return EXPERIMENTS[wildcards.exp]["evaluation"]


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
