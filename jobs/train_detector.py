"""Launcher of `hrem train-detector` (same flags): python jobs/train_detector.py --help"""
import sys

import hrem.cli

if __name__ == "__main__":
    sys.exit(hrem.cli.main(["train-detector", *sys.argv[1:]]))
