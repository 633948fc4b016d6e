"""`python -m flowmetal` runs the command line."""

from .cli import main

main()
