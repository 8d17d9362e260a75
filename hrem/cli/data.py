"""`hrem data`: generate the ShapesRef demo dataset, draw a contact sheet of it, check a dataset folder."""
from __future__ import annotations

import argparse
from pathlib import Path

from hrem.cli.options import HelpFormatter, add_out_argument, add_split_argument, add_workers_argument

DESCRIPTION = """Datasets. `shapes` writes the ShapesRef demo dataset (images + Karpathy JSON for
retrieval, RefCOCO-style JSON + PNG masks for grounding, scene graphs); `contact-sheet` draws a few scenes
with their captions, expressions, boxes and mask outlines; `check` reads every split back through the
readers and reports counts."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="generate, inspect and check datasets", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    fmt = HelpFormatter

    shapes = commands.add_parser("shapes", help="generate ShapesRef", formatter_class=fmt,
                                 description="Generate the ShapesRef demo dataset (deterministic by seed) into "
                                             "the folder --out, which must not exist unless --overwrite. "
                                             "Workers default: one per CPU (1 below 200 images).")
    add_out_argument(shapes, required=True)
    shapes.add_argument("--images", type=int, default=10000, help="total images, split 80/10/10")
    shapes.add_argument("--train", type=int, help="train images (overrides the --images split)")
    shapes.add_argument("--dev", type=int, help="dev (val) images (overrides the --images split)")
    shapes.add_argument("--test", type=int, help="test images (overrides the --images split)")
    shapes.add_argument("--size", type=int, default=128, help="image side in pixels")
    shapes.add_argument("--seed", type=int, default=0, help="random seed")
    add_workers_argument(shapes)
    shapes.add_argument("--caption-version", type=int, default=2, choices=(1, 2),
                        help="captions: 2 = version 2 (they pin down their image), 1 = the first, generic ones "
                             "(images, masks and refs are identical)")
    shapes.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    shapes.set_defaults(func=run_shapes)

    sheet = commands.add_parser("contact-sheet", help="draw scenes with their texts", formatter_class=fmt,
                                description="A PNG grid (the file --out) of scenes with captions, expressions, "
                                            "boxes and masks.")
    sheet.add_argument("--data", required=True, type=Path, help="a ShapesRef folder")
    add_out_argument(sheet, required=True)
    add_split_argument(sheet)
    sheet.add_argument("--n", type=int, default=6, help="number of scenes")
    sheet.set_defaults(func=run_contact_sheet)

    ceiling = commands.add_parser(
        "ceiling", help="the truth-only oracle R@K of a ShapesRef split", formatter_class=fmt,
        description="Parse every caption of a split back into facts (hrem.eval.shapes_grammar; stored facts "
                    "where the text is outside the grammar), check each against every image's scene graph "
                    "(hrem.eval.shapes_truth, independent of the generator), and report the expected R@1/5/10 "
                    "and rsum of an oracle that ranks the true items first in random order: the best a "
                    "retrieval model can do from what the captions say. --out: write the report as JSON to "
                    "that file.")
    ceiling.add_argument("--data", required=True, type=Path, help="a ShapesRef folder")
    add_split_argument(ceiling)
    add_out_argument(ceiling)
    ceiling.set_defaults(func=run_ceiling)

    check = commands.add_parser("check", help="read a ShapesRef folder back and count", formatter_class=fmt,
                                description="Validate every split of a ShapesRef folder with the readers.")
    check.add_argument("--data", required=True, type=Path, help="a ShapesRef folder")
    check.set_defaults(func=run_check)


def _config(args: argparse.Namespace):
    from hrem.data.shapes import ShapesRefConfig, split_images

    train, dev, test = split_images(args.images)
    return ShapesRefConfig(train=train if args.train is None else args.train,
                           dev=dev if args.dev is None else args.dev,
                           test=test if args.test is None else args.test, size=args.size, seed=args.seed,
                           caption_version=args.caption_version)


def run_shapes(args: argparse.Namespace) -> int:
    from hrem.data.shapes import generate_shapesref

    config = _config(args)
    summary = generate_shapesref(args.out, config, workers=args.workers, overwrite=args.overwrite)
    counts = summary.counts
    print(f"ShapesRef written to {summary.out}: {config.train} train / {config.dev} val / {config.test} test "
          f"images ({config.size}px, seed {config.seed}), {counts['objects']} objects, "
          f"{counts['expressions']} referring expressions, {counts['captions']} captions")
    print(f"generation: {summary.seconds:.2f} s, {summary.images_per_second:.0f} images/s "
          f"({summary.workers} worker(s), PNG writing included)")
    return 0


def run_contact_sheet(args: argparse.Namespace) -> int:
    from hrem.data.shapes.contact_sheet import make_contact_sheet

    out = make_contact_sheet(args.data, args.out, split=args.split, n=args.n)
    print(f"contact sheet of {args.n} {args.split} scenes written to {out}")
    return 0


def run_ceiling(args: argparse.Namespace) -> int:
    import json

    from hrem.eval.ceiling import shapes_ceiling
    from hrem.utils.files import write_json_atomic

    report = shapes_ceiling(args.data, args.split)
    oracle = report["oracle"]
    print(f"{args.data} {args.split}: {report['images']} images, {report['captions']} captions (caption version "
          f"{report['caption_version']}; facts from the text for {report['facts_from_text']}, stored for "
          f"{report['facts_stored']})")
    print("| oracle | R@1 | R@5 | R@10 |\n|---|---|---|---|")
    for direction in ("i2t", "t2i"):
        print(f"| {direction} | " + " | ".join(f"{oracle[f'{direction}_r{k}']:.1f}" for k in (1, 5, 10)) + " |")
    print(f"rsum {oracle['rsum']:.1f}; a caption is true of {oracle['images_per_caption']['median']:g} image(s) "
          f"(median; mean {oracle['images_per_caption']['mean']:.2f}); an image has "
          f"{oracle['true_captions_per_image']['median']:g} true captions (median; mean "
          f"{oracle['true_captions_per_image']['mean']:.2f})")
    if args.out:
        write_json_atomic(args.out, report)
        print(json.dumps({"wrote": str(args.out)}))
    return 0


def run_check(args: argparse.Namespace) -> int:
    from hrem.data.readers import expand_sentences, read_karpathy, read_refs

    for split in ("train", "val", "test"):
        captions = read_karpathy(args.data / "dataset_shapesref.json", args.data, split)
        refs = read_refs(args.data / "refs" / f"{split}.json", split, args.data / "images")
        print(f"{split}: {len(captions.image_paths)} images, {len(captions.captions)} captions, "
              f"{len(refs)} referred objects, {len(expand_sentences(refs))} expressions: OK")
    return 0
