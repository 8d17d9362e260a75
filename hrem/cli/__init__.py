"""The `hrem` command line: one subcommand per stage, each a thin module in this package.

Each module in COMMAND_MODULES defines `register(subparsers)`, which adds its parser and sets
`func=<callable(args) -> int>`. `main(argv)` is what the console script, `python -m hrem` and the
`jobs/*.py` launchers call, so tests can call it too.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from hrem import __version__
from hrem.cli.config_file import apply_config_file
from hrem.cli.os_errors import describe_os_error
from hrem.utils.logging import setup_logging

# Order = order in `hrem --help`. Modules are imported lazily only to build their parser; heavy imports
# (torch, faiss) happen inside each command's function.
COMMAND_MODULES = (
    "hrem.cli.data",
    "hrem.cli.train",
    "hrem.cli.evaluate",
    "hrem.cli.index",
    "hrem.cli.detector",
    "hrem.cli.regions",
    "hrem.cli.embed",
    "hrem.cli.search",
    "hrem.cli.ground",
    "hrem.cli.serve",
    "hrem.cli.convert",
    "hrem.cli.models",
)

log = logging.getLogger("hrem")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hrem",
        description="HREM image-text retrieval: data, training, embedding, FAISS indexing, search, "
                    "evaluation and MCN-style grounding. Each subcommand has its own --help.",
    )
    parser.add_argument("--version", action="version", version=f"hrem {__version__}")
    parser.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING; default INFO)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        apply_config_file(parser, argv)   # --config FILE: its values become defaults, under the flags given
    except (FileNotFoundError, ValueError) as exc:
        print(f"hrem: error: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(args.log_level)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # `hrem ... | head`: the reader went away; nothing is wrong with the command itself
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        log.error("interrupted; completed shards and checkpoints are kept, re-run the same command to resume")
        return 130
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        # User-facing errors carry their own explanation; the traceback is for --log-level DEBUG.
        log.debug("error detail", exc_info=True)
        print(f"hrem {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # after FileNotFoundError (an OSError too)
        message = describe_os_error(exc)
        if message is None:
            raise
        # disk full, permissions, read-only disk...: the user's to fix, not a bug, so one line, no traceback
        log.debug("error detail", exc_info=True)
        print(f"hrem {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
