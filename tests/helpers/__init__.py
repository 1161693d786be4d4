"""Helpers the test modules share (not test modules: pytest collects nothing here)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
"""The repository root, wherever a test module sits below ``tests/``."""
