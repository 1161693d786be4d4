"""Tests of ``agent.conversation``."""
