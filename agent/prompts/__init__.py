"""Prompt texts: one plain-text file each in ``<repo>/prompts/<name>.txt``.

Templates mark their slots as ``{{name}}`` (so the JSON examples inside a prompt need no escaping);
``render_prompt`` fills them.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"
"""Where the prompt files live: ``prompts/`` next to the ``agent`` package."""

_NAME_RE = re.compile(r"^[a-z0-9_-]+$")
_SLOT_RE = re.compile(r"\{\{(\w+)\}\}")


@lru_cache(maxsize=None)
def load_prompt(name: str) -> str:
    """The text of ``prompts/<name>.txt`` (read once, then cached)."""
    if not _NAME_RE.match(name):
        raise ValueError(f"bad prompt name {name!r}")
    return (PROMPTS_DIR / f"{name}.txt").read_text(encoding="utf-8")


def render_prompt(name: str, **values: object) -> str:
    """``load_prompt(name)`` with every ``{{slot}}`` replaced by ``str(values[slot])``.

    Values are inserted once, left to right, so braces inside a value are never expanded again.
    A slot with no value raises ``KeyError``.
    """
    return _SLOT_RE.sub(lambda m: str(values[m.group(1)]), load_prompt(name))
