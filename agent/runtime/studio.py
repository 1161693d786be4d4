"""The agent's graph for LangGraph's own tooling: ``langgraph dev`` serves it to LangGraph Studio,
which draws it and runs it turn by turn (``langgraph.json`` at the top of the repository points at
``agent.runtime.studio:graph``, importable from any working directory).

``graph`` is the same ``StateGraph`` as ``agent.runtime.session``'s, built from the settings (``LOCALEDIT_*``,
``.env``) when the module is imported (only the LangGraph server imports it): the worker (in-process, or ``LOCALEDIT_WORKER_URL``), the LLM
or the built-in parser, and the image store in ``$LOCALEDIT_DATA_DIR/images``. It has no checkpointer
of its own (the LangGraph server keeps the threads), and it is built once, at import, not per run:
the server's event loop refuses blocking calls such as creating the image folder.
A turn's input is ``{"text": "turn the cat into a fox", "upload": "/path/photo.jpg"}``.
"""

from __future__ import annotations

from typing import Any


def build(settings: Any = None) -> Any:
    """The compiled graph, for ``settings`` (default: the process's), on the parts
    :func:`agent.runtime.assembly.assemble` makes of them, without a checkpointer."""
    from agent.runtime.assembly import assemble

    return assemble(settings, checkpoints=False).graph()


graph = build()
"""What ``langgraph.json`` serves (the server reads the module's variables)."""
