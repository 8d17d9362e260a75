"""`hrem convert-checkpoint`: an official HREM / VSE-infinity checkpoint -> an hrem run directory."""
from __future__ import annotations

import argparse
from pathlib import Path

from hrem.cli.options import add_out_argument


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "convert-checkpoint", help="convert an official HREM / VSE-infinity checkpoint into a run directory",
        description="Read HREM's model_best.pth (or a VSE-infinity checkpoint on precomputed regions) without "
                    "unpickling arbitrary objects, map every key, rebuild the card from the stored options and "
                    "write RUN/config.json + RUN/model.safetensors + RUN/conversion.json. The official code "
                    "hard-codes bert-base-uncased: pass a local copy of it (or of the backbone the checkpoint "
                    "was trained with) as --text-model; hrem never downloads it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("src", type=Path, help="official checkpoint file (e.g. runs/f30k/model_best.pth)")
    add_out_argument(p, required=True)
    p.add_argument("--text-model", required=True,
                   help="local Hugging Face directory of the text backbone (config.json + tokenizer files)")
    p.add_argument("--card-name", default=None,
                   help="name stored in the card (default hrem-converted / vse-infty-converted)")
    p.add_argument("--format", default="auto", choices=("auto", "hrem", "vse_infty"), help="checkpoint family")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing non-empty --out folder as a whole (no old files are kept)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hrem.checkpoint.convert import convert_checkpoint

    fingerprint = convert_checkpoint(args.src, args.out, args.text_model, args.card_name, args.format,
                                     overwrite=args.overwrite)
    print(f"wrote {args.out} (model fingerprint {fingerprint})")
    return 0
