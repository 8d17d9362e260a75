"""Build or extend a FAISS index over an embeddings directory: same flags as `hrem index`."""
import sys

import hrem.cli

if __name__ == "__main__":
    sys.exit(hrem.cli.main(["index", *sys.argv[1:]]))
