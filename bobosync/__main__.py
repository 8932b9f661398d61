"""``python -m bobosync``."""

import sys

from bobosync.cli import main

if __name__ == "__main__":
    sys.exit(main())
