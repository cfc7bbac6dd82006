"""`python -m benchmarks`: one command runs the whole comparison."""

import sys

from .runner import main

if __name__ == "__main__":
    sys.exit(main())
