"""Fixtures the agent's tests share (the conversation's and the runtime's)."""

from __future__ import annotations

import pytest

from agent.language.llm import Understander
from agent.runtime.session import Conversations
from tests.helpers.judging import JudgedWorker, Painter


@pytest.fixture
def judged(settings, registry, tmp_path, photo_path):
    """``judged(*painters, baseline=, part=, fail_at=, **settings)`` -> (session, worker): the judge with
    its real thresholds and the default budget of 3 attempts."""
    made = []

    def make(*painters: Painter, baseline: Painter | None = None, part: bool = False, fail_at=(), **overrides):
        s = settings.model_copy(update={"data_dir": tmp_path / f"data{len(made)}", "max_attempts": 3, **overrides})
        worker = JudgedWorker(s, registry=registry, painters=list(painters), baseline=baseline, part=part,
                              fail_at=fail_at)
        conv = Conversations(s, worker=worker, understander=Understander(None))
        made.append(conv)
        chat = conv.session()
        chat.send("", image=photo_path)
        return chat, worker

    yield make
    for conv in made:
        conv.close()
