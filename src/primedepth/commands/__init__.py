"""Sub-commands of the `primedepth` command line.

Each module here defines `register(subparsers)`, which adds one sub-command whose parser
carries `handler=<function(args) -> int>`. Heavy imports (torch, diffusers) happen inside the
handlers, so that `primedepth --help` stays fast.
"""
