#!/usr/bin/env bash
# Post-deploy script of the conda environments in envs/ (preprocess/text/train.post-deploy.sh
# link here). Snakemake runs it once, inside each environment it has just built, when the
# workflow runs with `--software-deployment-method conda`. It installs the txtrayalign package
# from the checkout the workflow runs from, editable (so code changes need no rebuild) and without
# dependencies (the environment file pins those), which gives the rules their `txtrayalign` command.
#
# The checkout is $TXTRAYALIGN_SRC (set it when Snakemake runs from another folder), else the current
# folder when it is a checkout.
set -euo pipefail

src="${TXTRAYALIGN_SRC:-}"
if [ -z "$src" ] && [ -f "$PWD/txtrayalign/cli.py" ]; then
    src="$PWD"
fi
if [ -z "$src" ] || [ ! -f "$src/pyproject.toml" ] || [ ! -f "$src/txtrayalign/cli.py" ]; then
    echo "envs/install-project.sh: cannot find the txtrayalign checkout (TXTRAYALIGN_SRC='${TXTRAYALIGN_SRC:-}', PWD='$PWD'); set TXTRAYALIGN_SRC to the folder holding pyproject.toml" >&2
    exit 1
fi
python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation --editable "$src"
python -c "import txtrayalign.cli" || {
    echo "envs/install-project.sh: txtrayalign was installed from $src but does not import" >&2
    exit 1
}
