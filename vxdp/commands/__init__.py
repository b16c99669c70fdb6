"""CLI subcommands: one module each, found by `vxdp.cli`.

A command module defines `NAME` (the subcommand), `HELP` (one line), `add_arguments(parser)`
and `run(args) -> int` (the exit status).
"""
