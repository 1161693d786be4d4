"""The test scene the agent, worker and UI tests share: three "cats" at known boxes.

Segmentation, editing, scoring and captioning run the real tiny models. Only grounding is fixed:
the tiny GroundingDINO's boxes are noise, so ``SceneWorker`` answers "cat" with the boxes of the
objects drawn in the scene, which makes "the right box was chosen" checkable.
"""

from __future__ import annotations

import numpy as np

from agent.language.llm import Understander
from agent.runtime.session import Conversations, Session
from agent.runtime.store import ImageStore
from tools.config import Settings
from tools.images import grow_box
from tools.types import Detection, WorkerUnavailableError
from tools.worker import LocalWorker

CATS = [(10, 40, 50, 90), (60, 30, 110, 95), (120, 45, 150, 85)]  # left, middle (largest), right
SIZE = (160, 120)


class SceneWorker(LocalWorker):
    """The real in-process worker, except that grounding knows the test scene's objects."""

    def __init__(self, *args, objects: dict[str, list] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.objects = objects if objects is not None else {"cat": CATS}
        self.down = False
        self.caption_down = False  # only the captioner fails (a caption is context: the turn goes on)
        self.ground_calls: list[str] = []
        self.caption_calls = 0
        self.segment_calls = 0

    def caption(self, image):
        self.caption_calls += 1
        if self.caption_down:
            raise WorkerUnavailableError("The captioner is not reachable right now.")
        return super().caption(image)

    def segment(self, image, boxes=(), points=(), point_labels=None):
        self.segment_calls += 1
        self._check()
        return super().segment(image, boxes, points=points, point_labels=point_labels)

    def calls(self) -> tuple[int, int, int]:
        """``(captions, groundings, segmentations)`` asked so far."""
        return self.caption_calls, len(self.ground_calls), self.segment_calls

    def ground(self, image, phrase, **kwargs):
        self.ground_calls.append(phrase)
        self._check()
        words = phrase.lower().split()
        for name, boxes in self.objects.items():
            if name in words:
                return [Detection(name, 0.9 - 0.01 * i, box) for i, box in enumerate(boxes)]
        return []

    def edit(self, *args, **kwargs):
        self._check()
        return super().edit(*args, **kwargs)

    def _check(self):
        if self.down:
            raise WorkerUnavailableError("The vision worker is not reachable right now; try again in a moment.")


def agent_settings(settings: Settings, tmp_path, **overrides) -> Settings:
    lenient = dict(min_clip_dir=-1.0, min_clip_gc=-1.0, max_l1_outside=1.0, min_l1_region=0.0, max_seam=1.0,
                   min_mask_fill=0.0, baseline_margin=2.0, min_rc_lead=-100.0,
                   min_l1_global=0.0)
    return settings.model_copy(update={"data_dir": tmp_path / "data", **lenient, **overrides})


def open_conversations(settings: Settings, registry, tmp_path, understander=None, objects=None,
                       **overrides) -> Conversations:
    """``Conversations`` over a ``SceneWorker`` (grounding knows ``objects``, default the cats) with
    lenient judge thresholds and the offline parser unless ``understander`` is given."""
    s = agent_settings(settings, tmp_path, **overrides)
    return Conversations(s, worker=SceneWorker(s, registry=registry, objects=objects),
                         understander=understander or Understander(None))


def pixels(path) -> np.ndarray:
    return np.asarray(ImageStore.open(path))


def edited_region(chat: Session) -> np.ndarray:
    """The region the last edit was allowed to change."""
    return ImageStore.open_mask(chat.record()["region"])


def inside(mask: np.ndarray, box, dilate: int = 4, work: tuple[int, int] = (64, 64)) -> bool:
    """True when every pixel of ``mask`` lies within ``box`` grown as the pipeline grows it:
    SAM's mask is clipped to the box grown by 10%, then dilated by ``dilate`` work pixels
    (``SIZE / work`` full pixels each), plus one pixel of resampling."""
    x0, y0, x1, y1 = grow_box(box, 0.1, SIZE)
    mx, my = dilate * SIZE[0] / work[0] + 1, dilate * SIZE[1] / work[1] + 1
    outside = mask.copy()
    outside[max(0, int(y0 - my)):int(np.ceil(y1 + my)), max(0, int(x0 - mx)):int(np.ceil(x1 + mx))] = False
    return not outside.any()
