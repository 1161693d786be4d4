"""One assembly (``agent.runtime.assembly``): the ``Settings`` an entry point is handed reach the worker and the
understander it runs on (the LLM's turn budget, retries and timeout), for ``Conversations`` (chat-cli,
``Session``, the API), the chat UI's ``Backend`` and LangGraph Studio's graph alike."""

from __future__ import annotations

import pytest

from agent.runtime import studio
from agent.runtime.assembly import assemble
from agent.runtime.session import Conversations
from chat_ui.backend import Backend, PanelSettings
from tools.config import Settings
from tools.worker import LocalWorker


def llm_settings(tmp_path, budget: float, retries: int, timeout: float) -> Settings:
    """Settings with an LLM configured (a server nobody listens on: nothing is sent in these tests)."""
    return Settings(llm_model="tiny-chat", llm_base_url="http://127.0.0.1:9/v1", llm_api_key="",
                    llm_turn_budget=budget, llm_retries=retries, llm_timeout=timeout,
                    data_dir=tmp_path / "data", device="cpu", _env_file=None)


def llm_knobs(understander) -> tuple[float, int, float]:
    """``(turn budget, retries, request timeout)`` an understander runs with."""
    return understander.budget, understander.caller.retries, understander.llm.request_timeout


def studio_understander(graph):
    """The understander inside a compiled graph (its ``understand`` node's bound method)."""
    return graph.nodes["understand"].bound.func.__wrapped__.__self__.understander


@pytest.mark.parametrize("budget,retries,timeout", [(7.0, 3, 5.0), (42.0, 0, 12.0)])
def test_the_settings_handed_in_reach_every_entry_points_understander(tmp_path, budget, retries, timeout):
    settings = llm_settings(tmp_path, budget, retries, timeout)
    worker = LocalWorker(settings)
    parts = assemble(settings, worker=worker)
    try:
        assert llm_knobs(parts.understander) == (budget, retries, timeout)
        assert parts.worker is worker and parts.checkpointer is not None and parts.db_path.exists()
    finally:
        parts.close()

    conversations = Conversations(settings, worker=worker)
    try:
        assert llm_knobs(conversations.understander) == (budget, retries, timeout)
        assert conversations.settings is settings and not conversations.offline
    finally:
        conversations.close()

    backend = Backend(settings, worker_factory=lambda s, base: LocalWorker(s, registry=getattr(base, "registry", None)))
    try:
        panel = PanelSettings.from_settings(settings).model_copy(update={"steps": 3})
        ui = backend.conversations(panel)
        assert llm_knobs(ui.understander) == (budget, retries, timeout)
        assert ui.settings.steps == 3 and ui.worker.settings.steps == 3  # the panel's values reach its worker
    finally:
        backend.close()

    assert llm_knobs(studio_understander(studio.build(settings))) == (budget, retries, timeout)


def test_assembled_worker_follows_the_settings_and_no_llm_means_the_parser(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", device="cpu", max_side=96, llm_model=None, _env_file=None)
    parts = assemble(settings, checkpoints=False)
    assert isinstance(parts.worker, LocalWorker) and parts.worker.settings is settings
    assert parts.understander.llm is None and parts.checkpointer is None and parts.db is None
    assert (tmp_path / "data" / "images").is_dir()
