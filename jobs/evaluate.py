"""Launcher of `hrem evaluate` (same flags): python jobs/evaluate.py --help"""
import sys

import hrem.cli

if __name__ == "__main__":
    sys.exit(hrem.cli.main(["evaluate", *sys.argv[1:]]))
