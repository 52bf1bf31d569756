"""`txtrayalign check-config FILE...`: a settings file checked without Snakemake.

The files are read as Snakemake reads `--configfile`s (later ones update earlier ones, section by
section), then checked as the Snakefile checks them (`txtrayalign.settings`). Snakemake itself says
only "Config file is not valid JSON or YAML" for a YAML mistake in a `--configfile`; this names the
file, the line and the column.
"""

from __future__ import annotations

import argparse

from txtrayalign import settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="settings files (YAML), in the order given "
                        "to snakemake --configfile")


def run(args: argparse.Namespace) -> int:
    config: dict = {}
    for path in args.files:
        config = settings.merge(config, settings.load_config_file(path))
    given = settings.without_empty_sections(config)
    settings.check_config(given)
    experiments = settings.resolve_experiments(settings.with_defaults(given))
    print(f"{', '.join(args.files)}: valid; experiments: {', '.join(experiments)}")
    return 0
