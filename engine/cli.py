"""`python -m engine <command>`: each command module adds its own subparser."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from .config import ConfigError

# modules that define add_commands(subparsers); each sets a `func` default on its parsers
COMMAND_MODULES = ["engine.compare", "engine.jobs", "engine.audit", "engine.sweep", "engine.serve", "engine.grid"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine",
                                     description="EC Lab engine: unlearning runs, measured layer by layer.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:
                continue
            raise
        mod.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as err:
        print(f"error: invalid option {err}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError) as err:  # DataError, CheckpointError, DivergenceError, device errors
        if os.environ.get("ECLAB_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
