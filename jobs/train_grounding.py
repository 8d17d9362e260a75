"""Launcher of `hrem train-grounding` (same flags): python jobs/train_grounding.py --help"""
import sys

import hrem.cli

if __name__ == "__main__":
    sys.exit(hrem.cli.main(["train-grounding", *sys.argv[1:]]))
