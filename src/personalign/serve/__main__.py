"""``python -m personalign.serve ARGS`` = ``personalign serve ARGS`` (tests and benchmarks start it this way)."""

import sys

from personalign.cli import main

sys.argv = [sys.argv[0], "serve", *sys.argv[1:]]
main()
