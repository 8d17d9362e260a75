import sys

from hrem.cli import main

sys.exit(main())
