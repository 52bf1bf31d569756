# Every file the pipeline writes, stage by stage, for the target rules of the Snakefile.
#
# Snakemake looks for a missing output only in the jobs that a target asks for directly: a deleted or
# failed-and-removed intermediate (metrics.json, queries.h5, best.pt, a label table) under a final
# file that still exists (summary.md) is "Nothing to be done", and the old summary stays as if it
# were current. So each target asks for every product of its stage and of the stages before it:
# a missing one is then a missing input of the target, the same command rebuilds it, and everything
# after it reruns because its input is newer. The paths come from the rules' own `input:` and `output:`
# (a new input or output of a rule is covered without a change here), for the jobs the target needs.


def rule_products(rule_name, **wildcards):
    """The outputs of one job of `rule_name` (its wildcards given)."""
    return [expand(str(pattern), **wildcards)[0] for pattern in getattr(rules, rule_name).output]


def job_files(rule_name, **wildcards):
    """The inputs (input functions evaluated: checks.smk's `_files`) and outputs of one job: an input
    that a rule gains later (another table to read) is asked for by the targets without a change here."""
    job = SimpleNamespace(**{k: str(v) for k, v in wildcards.items()})
    return _files(workflow.get_rule(rule_name), job, "input") + rule_products(rule_name, **wildcards)


def datasets_in_use():
    """The training dataset and every dataset an experiment is evaluated on or takes its bank from."""
    used = {MAIN: None}
    for exp, name in EVAL_PAIRS:
        used[name] = None
        used[MAIN if EXPERIMENTS[exp]["evaluation"]["bank"] == "source" else name] = None
    return list(used)


def synth_rule_name(name):
    return "synth" if name == MAIN else f"synth_{name}"


def index_products(name=MAIN):
    synth = rule_products(synth_rule_name(name)) if DATASETS[name]["synthetic"]["enabled"] else []
    return synth + rule_products("index_dataset", dataset=name)


def image_products(name=MAIN):
    size = config["images"]["size"]
    shards = [f for shard in SHARDS for f in rule_products("images", dataset=name, size=size, shard=shard)]
    return index_products(name) + shards + rule_products("merge_images", dataset=name, size=size)


def text_products(name=MAIN):
    return index_products(name) + rule_products("sections", dataset=name)


def label_products(name=MAIN):
    return text_products(name) + rule_products("label", dataset=name)


def model_products():
    subsets = dict.fromkeys(EXPERIMENTS[exp]["subset"] for exp in EXPERIMENTS)
    splits = [f for subset in subsets for f in rule_products("split", dataset=MAIN, subset=subset)]
    models = [f for exp in EXPERIMENTS for f in job_files("train", exp=exp)]
    return list(dict.fromkeys(image_products() + text_products() + splits + models))


def evaluation_products():
    """Everything `snakemake evaluate` builds: every dataset in use, models, embeddings, evaluations, summary."""
    files = model_products()
    for name in datasets_in_use():
        files += image_products(name) + label_products(name)
    for exp, name in EVAL_PAIRS:
        bank = MAIN if EXPERIMENTS[exp]["evaluation"]["bank"] == "source" else name
        files += job_files("embed", dataset=name, exp=exp) + job_files("embed_bank", dataset=bank, exp=exp)
        files += job_files("evaluate_experiment", dataset=name, exp=exp)
    summary = rule_products("summarize") if EVAL_PAIRS else []  # a config of sweeps only: no summary across experiments
    return list(dict.fromkeys(files + summary))
