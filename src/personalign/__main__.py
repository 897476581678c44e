"""``python -m personalign``: the command line."""

from personalign.cli import main

main()
