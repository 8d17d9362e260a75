"""Launcher of `hrem regions` (same flags): images -> a region detector -> precomp region features.
python jobs/regions.py --help"""
import sys

import hrem.cli

if __name__ == "__main__":
    sys.exit(hrem.cli.main(["regions", *sys.argv[1:]]))
