"""One edit, start to finish: ground -> choose a box -> segment -> edit -> score.

This is what ``localedit edit`` and the evaluation harness run; the conversational agent runs the
same stages as separate graph nodes. It talks only to a ``Worker``, so it runs the same against
the in-process worker or a remote one, and it never imports torch.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
from PIL import Image

from tools.images import box_containing, mask_bbox, union_box
from tools.region import EvalRegion, evaluation_region, score_edit
from tools.types import Box, Detection, EditRequest, LocaleditError, Point, Scores, Segmentation
from tools.worker.interface import ProgressFn, Worker


class NothingFoundError(LocaleditError):
    """Grounding found no object for the target phrase."""


Chooser = Callable[[Sequence[Detection], tuple[int, int]], list[int]]
"""Picks detection indices (e.g. "the leftmost cat"); may raise LocaleditError to ask instead."""


@dataclass
class EditReport:
    """Everything one edit did, for the JSON report and for the pictures."""

    image: Image.Image  # the edited image, at the input's size
    editor: str
    path: str  # "localized" or "global" (no region: plain InstructPix2Pix, the CMU "None" rule)
    request: EditRequest
    target: Optional[str] = None
    detections: list[Detection] = field(default_factory=list)
    chosen: list[int] = field(default_factory=list)
    box: Optional[Box] = None
    points: list[tuple[float, float, int]] = field(default_factory=list)  # (x, y, label) point prompts given
    segmentation: Optional[Segmentation] = None
    region: Optional[np.ndarray] = None  # what the editor was allowed to change (the mask, dilated)
    boxes: list[Box] = field(default_factory=list)  # the target box(es) the edit was given or chose
    eval_region: Optional[EvalRegion] = None  # what the scores were measured on (tools.region)
    scores: Optional[Scores] = None
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def mask(self) -> Optional[np.ndarray]:
        """The edit region: outside it the output is bit-identical to the input."""
        if self.region is not None:
            return self.region
        return self.segmentation.mask if self.segmentation is not None else None

    def to_dict(self) -> dict[str, Any]:
        seg = self.segmentation
        return {
            "path": self.path,
            "editor": self.editor,
            "target": self.target,
            "detections": [d.to_dict() for d in self.detections],
            "chosen": self.chosen,
            "box": [round(v, 1) for v in self.box] if self.box else None,
            "points": [[round(x, 1), round(y, 1), label] for x, y, label in self.points],
            "mask": None if seg is None else {
                "area": seg.area, "fraction": round(seg.area / seg.mask.size, 4),
                "edit_area": int(self.region.sum()) if self.region is not None else None,
                "source": seg.source, "score": round(float(seg.score), 4), "note": seg.note,
                "embedding_cache_hit": seg.cache_hit},
            "request": self.request.to_dict(),
            "scores": self.scores.to_dict() if self.scores else None,
            "scored_on": None if self.eval_region is None else {
                "boxes": [[round(v, 1) for v in b] for b in self.eval_region.boxes],
                "mask_area": None if self.eval_region.mask is None else int(self.eval_region.mask.sum()),
                "source": self.eval_region.source},
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "info": self.info,
        }


class _Stopwatch:
    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - start


def run_edit(worker: Worker, image: Image.Image, request: EditRequest, *,
             target: Optional[str] = None, box: Optional[Box] = None,
             mask: Optional[np.ndarray] = None, score: bool = True,
             box_threshold: Optional[float] = None, text_threshold: Optional[float] = None,
             choose: Optional[Chooser] = None, progress: Optional[ProgressFn] = None,
             points: Sequence[Point] = (), point_labels: Optional[Sequence[int]] = None,
             region: Optional[EvalRegion] = None, labels: tuple[str, str] = ("", "")) -> EditReport:
    """Edit ``image`` as ``request`` says, only inside the region the other arguments name.

    Args:
        worker: the vision worker (in-process or remote).
        image: the input photo, RGB, any size.
        request: the editor and its knobs; ``request.editor`` "ip2p" edits the whole image.
        target: a phrase to ground ("cat"); ``choose`` picks among the detections (default: the
            highest-scoring one).
        box: a region given directly (x0, y0, x1, y1), skipping grounding; SAM refines it.
        mask: a region given directly (bool, image size), skipping grounding and SAM.
        score: compute the metrics of the result (:func:`tools.region.score_edit`).
        box_threshold, text_threshold: GroundingDINO thresholds (None: configured defaults).
        choose: which detections to edit, from the detections and the image size.
        progress: called as ``progress(step, total)`` during diffusion.
        points: ``(x, y)`` points on the object (what a click sends), with ``point_labels`` (1 on
            the object, 0 not on it; default all 1). They make one SAM prompt together with
            ``box``, or with the smallest detection of ``target`` that contains the first point
            on the object (none contains it: the points alone); ``choose`` is not used then.
        region: the evaluation region to score on (``localedit eval`` gives every editor of a
            sample the same one); default: this edit's target box(es) and undilated mask.
        labels: CLIP-RC's ``(target category, source category)`` (:func:`tools.region.rc_labels`);
            empty: no CLIP-RC.

    Raises:
        NothingFoundError: ``target`` matched nothing in the image.
        LocaleditError: a request the editors cannot run (e.g. a masked editor and no region).
    """
    clock = _Stopwatch()
    report = EditReport(image=image, editor=request.editor, path="localized", request=request, target=target)
    signs = [1] * len(points) if point_labels is None else [int(v) for v in point_labels]
    report.points = [(float(p[0]), float(p[1]), v) for p, v in zip(points, signs)]
    if mask is not None:
        report.segmentation = Segmentation(mask=mask.astype(bool), score=1.0, source="user")
        report.box = mask_bbox(report.segmentation.mask)
        report.boxes = [report.box] if report.box is not None else []
    elif box is not None or target or points:
        boxes = [box] if box is not None else []
        if box is None and target:
            with clock.stage("ground"):
                report.detections = worker.ground(image, target, box_threshold=box_threshold,
                                                  text_threshold=text_threshold)
            if not report.detections and not points:
                raise NothingFoundError(
                    f"No '{target}' was found in the image; try another wording, a lower "
                    f"--box-threshold, or give the region with --box.")
            if points:  # the detection the click fell in is the object (none: the points alone)
                clicked = next((p for p, v in zip(points, signs) if v == 1), None)
                hit = box_containing(clicked, [d.box for d in report.detections]) if clicked else None
                report.chosen = [hit] if hit is not None else []
            else:
                report.chosen = choose(report.detections, image.size) if choose else [0]
            boxes = [report.detections[i].box for i in report.chosen]
        with clock.stage("segment"):
            report.segmentation = worker.segment(image, boxes, points=points, point_labels=signs) if points \
                else worker.segment(image, boxes)
        report.boxes = list(boxes) if boxes else [b for b in [mask_bbox(report.segmentation.mask)] if b is not None]
        report.box = union_box(report.boxes) if report.boxes else None
    if report.segmentation is None:
        report.path = "global"
        if request.editor != "ip2p":
            report.info["editor_note"] = f"no region given: ran ip2p instead of {request.editor}"
            request = report.request = replace(request, editor="ip2p")
            report.editor = "ip2p"
    with clock.stage("edit"):
        result = worker.edit(image, report.mask, request, progress=progress)
    report.image, report.editor, report.region = result.image, result.editor, result.region
    report.info.update(result.info)
    if region is None and report.segmentation is not None:
        region = evaluation_region(report.boxes, report.segmentation.mask,
                                   source="user-mask" if mask is not None else "box" if box is not None
                                   else "grounded" if report.chosen else "points")
    report.eval_region = region
    if score:
        with clock.stage("score"):
            report.scores = score_edit(worker, image, result.image, region, source_caption=request.source_caption,
                                       target_caption=request.target_caption, target_label=labels[0],
                                       source_label=labels[1])
    report.timings = dict(clock.times, total=sum(clock.times.values()))
    return report

