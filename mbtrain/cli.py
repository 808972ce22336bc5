"""The ``mbtrain`` console script: one argparse parser, subcommands from modules.

Each module in :data:`COMMAND_MODULES` has ``register(subparsers)``, which adds
its subcommands and sets ``func(args) -> int`` (the exit code) on each.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import __version__

COMMAND_MODULES = (
    "mbtrain.commands.gradcheck",
    "mbtrain.commands.train",
    "mbtrain.bench.cli",
)


class Parser(argparse.ArgumentParser):
    """An argument parser that takes no option for another: no prefix matching.

    With argparse's default, ``--data my.csv`` would be read as ``--data-dir``
    or ``--dataset`` in a command that lacked ``--data``, and ``--data`` could
    never be added beside them. Every subcommand's parser is of this class.
    """

    def __init__(self, *args, allow_abbrev=False, **kwargs):
        super().__init__(*args, allow_abbrev=allow_abbrev, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="mbtrain",
        description="Fully vectorized mini-batch training of sigmoid MLPs: "
                    "gradient checks, training, benchmarks and batch-size sweeps.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'mbtrain COMMAND --help' for a command's options and an example.",
    )
    parser.add_argument("--version", action="version", version=f"mbtrain {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. piped into `head`: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
