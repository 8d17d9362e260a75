"""Query an index: `python jobs/search.py --index IDX "a red circle" -k 10` (= `hrem search ...`)."""
import sys

from hrem.cli import main

if __name__ == "__main__":
    sys.exit(main(["search", *sys.argv[1:]]))
