"""The flag vocabulary shared by the subcommands, defined once (not a subcommand itself).

A shared flag has the same name, type, default, choices and help in every command that has it
(tests/test_cli_vocabulary.py walks every parser to check). Where the sensible value differs per command
(a training batch vs an encoder batch) the default is None, which means "the job's own default": the
job dataclasses in hrem.jobs hold it and docs/cli.md lists it.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("hrem.cli")

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown, except for on/off flags (a `--no-x` flag showing "default: True" misleads) and for
    None (the help says what happens then)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.nargs == 0 or action.default is None:
            return action.help
        return super()._get_help_string(action)


class DeprecatedAliases(argparse.Action):
    """A plain store action that warns when one of its old spellings (`deprecated`) is used."""

    def __init__(self, option_strings, dest, deprecated: tuple[str, ...] = (), **kwargs) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.deprecated = tuple(deprecated)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if option_string in self.deprecated:
            log.warning("%s is deprecated; use %s", option_string, self.option_strings[0])
        setattr(namespace, self.dest, values)


def parse_fractions(text: str) -> tuple[float, ...]:
    """"0.5,0.75" -> (0.5, 0.75) for --decay-fractions (TrainConfig checks the range)."""
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated fractions such as 0.75, found {text!r}") from None


def parse_ints(text: str) -> tuple[int, ...]:
    """"30,35,40" -> (30, 35, 40)."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 30,35, found {text!r}") from None


def parse_names(text: str) -> tuple[str, ...]:
    """"val, test" -> ("val", "test"); "" -> () (e.g. no test splits)."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_override(item: str) -> tuple[str, Any]:
    """"head.pooling=mean" -> ("head.pooling", "mean"); the value is parsed as JSON, else kept as a string."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, found {item!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


class MergeOverrides(argparse.Action):
    """--set KEY=JSON, repeatable, into one {key: value} dict (a later key wins)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        key, value = values
        setattr(namespace, self.dest, {**(getattr(namespace, self.dest) or {}), key: value})


# -- the shared flags -------------------------------------------------------------------------------------

def add_out_argument(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument("--out", type=Path, default=None, required=required, metavar="PATH",
                        help="where the command writes: the run directory (train*), the report folder "
                             "(evaluate*), else what the description says")


def add_split_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", default="test", metavar="NAME",
                        help="one dataset split: train, dev (= val), test or testall")


def add_splits_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--splits", type=parse_names, default=None, metavar="A,B",
                        help="comma-separated dataset splits, e.g. val,test (default: every split the data has; "
                             "evaluations leave out train)")


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto",
                        help="torch device: auto (cuda:0 when available, else cpu), cpu, cuda or cuda:N")


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="autocast precision; auto = fp16 on CUDA, fp32 on CPU (bf16 pays only on CPUs "
                             "with AMX / AVX512-BF16)")


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=0, metavar="N",
                        help="compute threads: torch intra-op threads (FAISS OpenMP threads in `hrem index`); "
                             "0 = the library's default; 1 is much faster on an oversubscribed CPU")


def add_batch_size_argument(parser: argparse.ArgumentParser, deprecated: tuple[str, ...] = ()) -> None:
    parser.add_argument("--batch-size", *deprecated, dest="batch_size", type=int, default=None, metavar="N",
                        action=DeprecatedAliases, deprecated=deprecated,
                        help="items per batch (default: the command's own, listed in docs/cli.md)")


def add_workers_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="worker processes that load or make data (0 = in the main process; default: the "
                             "command's own, listed in docs/cli.md)")


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def add_set_argument(parser: argparse.ArgumentParser, example: str) -> None:
    parser.add_argument("--set", dest="overrides", type=parse_override, action=MergeOverrides, default={},
                        metavar="KEY=JSON",
                        help=f"override a card field, e.g. --set {example} (value parsed as JSON, else taken as "
                             f"a string); repeatable")


SHARED_FLAGS = ("--out", "--split", "--splits", "--device", "--precision", "--threads", "--batch-size",
                "--workers", "--no-progress", "--config")


def model_type(kind: str, cast: type = str):
    """An argparse `type` for a model flag: a shipped name or a directory of the wrong kind is refused while
    parsing, so the error names the flag ("argument --grounding-model: 'demo' is a retrieval model, ...").
    The value stays as given; the job resolves it (hrem.utils.registry.resolve_model)."""
    from hrem.utils.registry import check_model_kind

    def parse(text: str):
        try:
            check_model_kind(text, kind)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return cast(text)

    parse.__name__ = f"{kind} model"
    return parse
