"""Tests of ``agent.runtime``."""
