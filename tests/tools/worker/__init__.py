"""Tests of ``tools.worker``."""
