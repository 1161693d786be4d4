"""Tests of ``tools.editors``."""
