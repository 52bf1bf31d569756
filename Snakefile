# TxtRayAlign: the pipeline's table of contents. Each stage's rules live in workflow/rules/.
#   snakemake --cores 8 evaluate                        the whole pipeline (the demo by default)
#   snakemake --cores 8 index|images_all|labels|train_all   stop after a stage
#   snakemake --profile profiles/slurm evaluate          on a SLURM cluster
# Settings: txtrayalign/config.schema.yaml (every key, its type and default), checked in common.smk.
import sys
from pathlib import Path

from snakemake.utils import min_version

from txtrayalign import settings

min_version("8.10")


# The demo's defaults, unless the user names config files of their own (`--configfile`), which then
# replace them whole (experiments included) rather than merge into them.
# (Checked first: a YAML mistake names the file and line in one line. A file given with --configfile
# Snakemake reads before this file; `txtrayalign check-config FILE` names the line of a mistake there.)
if not workflow.config_settings.configfiles:
    if Path("config/config.yaml").is_file():
        try:
            settings.load_config_file("config/config.yaml")
        except settings.ConfigError as e:
            sys.exit(f"config: {e}")

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/sweep_plan.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/demographics.smk"
include: "workflow/rules/images.smk"
include: "workflow/rules/text.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/checks.smk"
include: "workflow/rules/sweeps.smk"
include: "workflow/rules/products.smk"


# Each target asks for every file of its stage and of the stages before it (workflow/rules/products.smk):
# a file deleted by hand, or removed by Snakemake after a failed job, is rebuilt by the same command.


rule evaluate:
    """Every experiment trained, embedded and evaluated, with the summary table across them, and every
    sweep's summary (selected on validation, the chosen setting reported on test)."""
    input:
        evaluation_products(),
        sweep_outputs(),
    default_target: True


rule train_all:
    """Every experiment's trained model."""
    input:
        model_products(),


rule labels:
    """Report and sentence labels (CheXpert 14)."""
    input:
        label_products(),


rule images_all:
    """Every image shard and their merged index."""
    input:
        image_products(),


rule index:
    """The training dataset's index: images, studies and the problems between tables and disk."""
    input:
        index_products(),
