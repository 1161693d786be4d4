"""Helpers the test modules share (not test modules: pytest collects nothing here)."""
