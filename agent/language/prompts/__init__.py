"""Prompt texts: one plain-text file each, ``agent/language/prompts/<name>.txt``, shipped as package data.

They are read with :mod:`importlib.resources`, so they are found wherever the package is installed
(a wheel, ``pip install .``, a zip), not only beside a source tree. Templates mark their slots as
``{{name}}`` (so the JSON examples inside a prompt need no escaping); ``render_prompt`` fills them.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

_NAME_RE = re.compile(r"^[a-z0-9_-]+$")
_SLOT_RE = re.compile(r"\{\{(\w+)\}\}")


@lru_cache(maxsize=None)
def load_prompt(name: str) -> str:
    """The text of ``agent/language/prompts/<name>.txt`` (read once, then cached)."""
    if not _NAME_RE.match(name):
        raise ValueError(f"bad prompt name {name!r}")
    return resources.files(__name__).joinpath(f"{name}.txt").read_text(encoding="utf-8")


def render_prompt(name: str, **values: object) -> str:
    """``load_prompt(name)`` with every ``{{slot}}`` replaced by ``str(values[slot])``.

    Values are inserted once, left to right, so braces inside a value are never expanded again.
    A slot with no value raises ``KeyError``.
    """
    return _SLOT_RE.sub(lambda m: str(values[m.group(1)]), load_prompt(name))
