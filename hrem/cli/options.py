"""Flags shared by several subcommands (not a subcommand itself)."""
from __future__ import annotations

import argparse


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's; 1 is much faster on an oversubscribed CPU)")


def parse_fractions(text: str) -> tuple[float, ...]:
    """"0.5,0.75" -> (0.5, 0.75) for --decay-fractions (TrainConfig checks the range)."""
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated fractions such as 0.75, found {text!r}") from None
