"""``python -m gradkit``: the ``gradkit`` command."""

import sys

from gradkit.cli import main

if __name__ == "__main__":
    sys.exit(main())
