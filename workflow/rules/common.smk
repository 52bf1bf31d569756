# Helpers shared by the rules: validated config, experiments, paths, code fingerprints.
import copy
import json
import sys
from pathlib import Path

import yaml

from snakemake.utils import validate

from txtrayalign.constants import GROUPS
from txtrayalign.utils import code_fingerprint


# Rules call the `txtrayalign` command: find it beside the Python running Snakemake (a venv need not
# be activated). With --software-deployment-method conda, the rule's environment comes first.
shell.prefix(f'export PATH="{Path(sys.executable).parent}:$PATH"; ')


def _retype_command_line(overrides, cfg):
    """Give `--config` values their YAML types: Snakemake passes nested ones on as strings."""
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            _retype_command_line(value, cfg[key])
        elif isinstance(value, str) and isinstance(cfg.get(key), str) and value.strip():
            cfg[key] = yaml.safe_load(value)


_retype_command_line(workflow.config_settings.config, config)
validate(config, schema="../schemas/config.schema.yaml")


def _merge(base, override):
    """Deep-merge `override` into a copy of `base` (dicts merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


DATASET = config["dataset"]
SYNTH = DATASET.get("synthetic", {})
DATA_ROOT = Path(DATASET["root"])
RESULTS = Path(config["results"]) / DATASET["name"]
EXPERIMENTS = {
    name: _merge(config["defaults"], overrides) for name, overrides in config["experiments"].items()
}
for _name, _exp in EXPERIMENTS.items():
    if _exp["subset"] not in config["splits"]["subsets"]:
        raise ValueError(
            f"config: experiments.{_name}.subset = {_exp['subset']!r} is not one of "
            f"splits.subsets ({', '.join(config['splits']['subsets'])})"
        )
    if config["summary"]["k"] not in _exp["evaluation"]["k"]:
        raise ValueError(
            f"config: summary.k = {config['summary']['k']} is not in experiments.{_name}.evaluation.k"
        )
# Encoder names, weights and models checked without data (pretrained branch: txtrayalign.train.encoders)
from txtrayalign.train.encoders import experiment_problems, problems_report

_encoder_problems = [p for _name, _exp in EXPERIMENTS.items() for p in experiment_problems({**_exp, "name": _name})]
if _encoder_problems:
    raise ValueError("config: " + problems_report(_encoder_problems))

SHARDS = (
    GROUPS
    if config["images"]["parts_per_group"] == 1
    else [
        f"{g}-{i}of{config['images']['parts_per_group']}"
        for g in GROUPS
        for i in range(1, config["images"]["parts_per_group"] + 1)
    ]
)

# Fingerprints of the code behind each stage: a change reruns that stage and what follows it.
CODE = {
    "synth": code_fingerprint("synth", "constants.py"),
    "index": code_fingerprint("index.py", "constants.py"),
    "images": code_fingerprint("images"),
    "text": code_fingerprint("text"),
    "label": code_fingerprint("chexpert"),
    "split": code_fingerprint("splits.py"),
    "train": code_fingerprint("train"),
    "evaluate": code_fingerprint("evaluate"),
}


def log_path(rule_name, *parts):
    return str(RESULTS / "logs" / rule_name / ("-".join(parts) or rule_name)) + ".log"


def bench_path(rule_name, *parts):
    return str(RESULTS / "benchmarks" / rule_name / ("-".join(parts) or rule_name)) + ".tsv"


def synth_outputs():
    """The dataset tables, when the pipeline writes the synthetic dataset itself."""
    if not SYNTH.get("enabled", False):
        return []
    return [DATA_ROOT / "cxr-record-list.csv.gz", DATA_ROOT / "mimic-cxr-2.0.0-chexpert.csv.gz"]


def image_dir():
    return RESULTS / "images" / str(config["images"]["size"])


def model_dir(exp):
    return RESULTS / "models" / exp


def experiment(wildcards):
    return EXPERIMENTS[wildcards.exp]


def experiment_json(wildcards):
    """The experiment's resolved model and training settings, as the `train` command reads them."""
    exp = EXPERIMENTS[wildcards.exp]
    keys = ("image_encoder", "text_encoder", "embed_dim", "train")
    return json.dumps({"name": wildcards.exp, **{k: exp[k] for k in keys}}, sort_keys=True)


def summary_outputs():
    return [RESULTS / "eval" / "summary.csv", RESULTS / "eval" / "summary.md"]


def train_launcher(wildcards):
    """`txtrayalign`, or torchrun over the experiment's GPUs on one node when it asks for several."""
    gpus = EXPERIMENTS[wildcards.exp]["gpus"]
    if gpus > 1:
        return f"torchrun --standalone --nproc_per_node {gpus} -m txtrayalign"
    return "txtrayalign"


def evaluation(wildcards):
    return EXPERIMENTS[wildcards.exp]["evaluation"]
