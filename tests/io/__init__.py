"""Tests of `primedepth.io`, one module per submodule; no model involved."""
