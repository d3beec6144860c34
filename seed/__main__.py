"""``python -m seed`` -> seed.cli.main."""

import sys

from seed.cli import main

if __name__ == "__main__":
    sys.exit(main())
