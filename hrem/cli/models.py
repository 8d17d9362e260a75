"""`hrem models`: the packaged model cards and the shipped checkpoints, in two lists.

A card is an architecture (hrem/cards/*.json, for `hrem train --card`); a checkpoint is a trained model
(hrem/assets, named in hrem/assets/models.json, for `--model NAME` and `hrem.load(NAME)`). The two share
some names (`demo` is both the card and the checkpoint trained from it), hence two lists.
"""
from __future__ import annotations

import argparse
import json

# --kind accepts card kinds and model kinds; each names the same family in both lists
KIND_FAMILIES = {"hrem": "retrieval", "retrieval": "retrieval", "mcn": "grounding", "grounding": "grounding",
                 "detector": "detector"}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "models", help="list the model cards and the shipped checkpoints",
        description="Two lists: the model cards in hrem/cards (name, kind, description; what `hrem train --card` "
                    "and hrem.factory.load_card accept) and the shipped checkpoints (name, kind, headline "
                    "numbers from their reports, description; what --model / --grounding-model / --detector "
                    "and hrem.load accept).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--kind", default=None, choices=sorted(KIND_FAMILIES),
                   help="only this family: hrem = retrieval, mcn = grounding, detector")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per card or checkpoint (field 'type': card | checkpoint)")
    p.set_defaults(func=run)


def card_rows(family: str | None) -> list[dict]:
    from hrem.config.base import load_json
    from hrem.factory import list_models
    from hrem.utils.paths import CARDS_DIR
    from hrem.utils.registry import CARD_KIND_TO_MODEL_KIND

    rows = []
    for name in list_models():
        data = load_json(CARDS_DIR / f"{name}.json")
        if family is None or CARD_KIND_TO_MODEL_KIND.get(data.get("kind")) == family:
            rows.append({"type": "card", "name": name, "kind": data.get("kind"),
                         "description": data.get("description", "")})
    return rows


def checkpoint_rows(family: str | None) -> list[dict]:
    from hrem.utils.headline import headline
    from hrem.utils.registry import shipped_models

    rows = []
    for model in shipped_models(family):
        numbers = headline(model.path, model.kind)
        rows.append({"type": "checkpoint", "name": model.name, "kind": model.kind, "path": str(model.path),
                     "description": model.description,
                     "numbers": numbers.numbers if numbers else {},
                     "numbers_split": numbers.split if numbers else None,
                     "numbers_source": numbers.source if numbers else None,
                     "summary": numbers.text() if numbers else "no report"})
    return rows


def _table(rows: list[dict], columns: tuple[str, ...]) -> list[str]:
    widths = {c: max((len(str(r[c])) for r in rows), default=0) for c in columns[:-1]}
    return ["  " + "  ".join(f"{r[c]!s:<{widths[c]}}" for c in columns[:-1]) + f"  {r[columns[-1]]}"
            for r in rows]


def run(args: argparse.Namespace) -> int:
    family = KIND_FAMILIES.get(args.kind) if args.kind else None
    cards, checkpoints = card_rows(family), checkpoint_rows(family)
    if args.json:
        for row in cards + checkpoints:
            print(json.dumps(row))
        return 0
    print("cards (architectures, no weights; hrem train --card NAME):")
    print("\n".join(_table(cards, ("name", "kind", "description"))) or "  (none)")
    print("\nshipped checkpoints (trained; --model NAME, hrem.load(NAME)):")
    for line, row in zip(_table(checkpoints, ("name", "kind", "summary")), checkpoints):
        print(f"{line}\n      {row['description']}")
    if not checkpoints:
        print("  (none)")
    return 0
