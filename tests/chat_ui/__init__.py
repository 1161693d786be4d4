"""Tests of ``chat_ui``."""
