"""Launcher of `hrem ground` (same flags): python jobs/ground.py --help"""
import sys

import hrem.cli

if __name__ == "__main__":
    sys.exit(hrem.cli.main(["ground", *sys.argv[1:]]))
