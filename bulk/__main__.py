"""`python -m bulk`: see bulk/__init__.py."""

import sys

from bulk.cli import main

if __name__ == "__main__":
    sys.exit(main())
