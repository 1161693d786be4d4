"""The chat app as the browser tests run it: ``chainlit run tests/helpers/ui_helpers.py``.

It is the real app (``chat_ui.app``) with one change, made through ``chat_ui.backend.configure``:
grounding knows the test scene's objects (``SceneWorker`` from the agent tests), because the tiny
GroundingDINO's boxes are noise: "cat" and the generic "object" a click grounds for context are the
three drawn cats, "tail" a small box between the middle and the right one. Captioning, SAM, the
editors and CLIP are the real tiny models.
"""

from __future__ import annotations

from chat_ui import backend
from tests.helpers.scenes import CATS, SceneWorker

TAIL = (108, 70, 124, 84)
OBJECTS = {"cat": CATS, "object": CATS, "tail": [TAIL]}


def scene_worker(settings, base):
    """A ``SceneWorker`` per settings combination, sharing the first one's loaded models."""
    return SceneWorker(settings, registry=base.registry if base is not None else None, objects=OBJECTS)


backend.configure(worker_factory=scene_worker)

import chat_ui.app  # noqa: E402,F401 - registers the Chainlit callbacks
