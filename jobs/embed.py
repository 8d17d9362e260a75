"""Batch-embed a corpus: `python jobs/embed.py --data D --model RUN --out EMB` (= `hrem embed ...`).

With no arguments it runs the embedded demo: the ShapesRef test split (generated and cached under
hrem-out/cache on first use) with the demo checkpoint shipped in the package -> hrem-out/demo/.
"""
import sys

from hrem.cli import main

if __name__ == "__main__":
    sys.exit(main(["embed", *sys.argv[1:]]))
