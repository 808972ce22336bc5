"""Subcommands of the ``mbtrain`` console script, one module per group."""
