"""Flags shared by several subcommands (not a subcommand itself)."""
from __future__ import annotations

import argparse


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's; 1 is much faster on an oversubscribed CPU)")
