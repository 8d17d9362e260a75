"""Launcher of `hrem train` (same flags): python jobs/train.py --help"""
import sys

import hrem.cli

if __name__ == "__main__":
    sys.exit(hrem.cli.main(["train", *sys.argv[1:]]))
