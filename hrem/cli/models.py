"""`hrem models`: the packaged model cards (retrieval and grounding)."""
from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "models", help="list the packaged model cards",
        description="List the model cards shipped in hrem/cards (name, kind, description). A card name is "
                    "what `hrem train --card` and hrem.factory.load_card accept.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--kind", default=None, choices=("hrem", "mcn"), help="only cards of this kind")
    p.add_argument("--json", action="store_true", help="print one JSON object per card")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hrem.config.base import load_json
    from hrem.factory import list_models
    from hrem.utils.paths import CARDS_DIR

    rows = []
    for name in list_models(args.kind):
        data = load_json(CARDS_DIR / f"{name}.json")
        rows.append({"name": name, "kind": data.get("kind"), "description": data.get("description", "")})
    name_width = max((len(r["name"]) for r in rows), default=0)
    kind_width = max((len(str(r["kind"])) for r in rows), default=0)
    for row in rows:
        print(json.dumps(row) if args.json else
              f"{row['name']:<{name_width}}  {row['kind']:<{kind_width}}  {row['description']}")
    return 0
