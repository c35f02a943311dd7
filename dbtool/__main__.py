"""``python -m dbtool``: the same as the ``dbtool`` console script."""

from dbtool.cli import main

main()
