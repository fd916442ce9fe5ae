"""Tests of `primedepth.train`."""
