"""The agent's graph for LangGraph's own tooling: ``langgraph dev`` serves it to LangGraph Studio,
which draws it and runs it turn by turn (``langgraph.json`` at the top of the repository points at
``agent.studio:graph``, importable from any working directory).

``graph`` is the same ``StateGraph`` as ``agent.session``'s, built from the settings (``LOCALEDIT_*``,
``.env``) when the module is imported (only the LangGraph server imports it): the worker (in-process, or ``LOCALEDIT_WORKER_URL``), the LLM
or the built-in parser, and the image store in ``$LOCALEDIT_DATA_DIR/images``. It has no checkpointer
of its own (the LangGraph server keeps the threads), and it is built once, at import, not per run:
the server's event loop refuses blocking calls such as creating the image folder.
A turn's input is ``{"text": "turn the cat into a fox", "upload": "/path/photo.jpg"}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def build(settings: Any = None) -> Any:
    """The compiled graph, for ``settings`` (default: the process's)."""
    from agent.graph import build_graph
    from agent.llm import Understander
    from agent.llm_client import make_llm
    from agent.store import ImageStore
    from tools.config import get_settings
    from tools.worker import make_worker

    settings = settings or get_settings()
    store = ImageStore(Path(settings.data_dir) / "images")
    return build_graph(make_worker(settings), Understander(make_llm(settings), settings=settings), store, settings)


graph = build()
"""What ``langgraph.json`` serves (the server reads the module's variables)."""
