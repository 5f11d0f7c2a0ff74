"""``python -m flows.cli ...``: the same as the ``alflow`` console script."""

from flows.cli import main

main()
