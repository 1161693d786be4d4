"""Tests of ``agent.language``."""
