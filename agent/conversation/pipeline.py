"""The one staged pipeline from an edit plan to pixels: ground -> select -> segment -> edit -> score -> judge.

Every surface runs these stages through this module, so one request gives the same region,
editor, attempts and verdict everywhere (DESIGN.md, "One pipeline"):

- the chat graph (:mod:`agent.conversation.graph`) runs each stage as a node, calling the stage functions below
  (:func:`ground`, :func:`segment`, :func:`request_for`, :func:`scoring_region`, :func:`score`,
  :func:`judge_attempt`, :func:`best_index`, :func:`next_stage`), so Stop, the per-call time
  limits and the questions stay the graph's;
- ``localedit edit`` and ``localedit eval`` call :func:`run`, which loops over the same stage
  functions: the judge's attempt queue (:func:`agent.conversation.judge.attempt_queue`), a verdict per attempt
  (:func:`agent.conversation.judge.problems`), the queue revised after it, and the best attempt kept.

Which editor, which knobs, how many attempts and what counts as poor are the judge's
(:mod:`agent.conversation.judge`, thresholds in ``tools.config.Settings``); this module only orders the calls.
It talks to a ``Worker`` only and never imports torch (``tests/test_layout.py``).

Regions: "add" (a hat on the cat) edits the object's box grown by :data:`ADD_MARGIN` on each
side, because the new thing reaches past the object's outline; every other action edits the
object's SAM mask. Every attempt is scored on the same region (:func:`scoring_region`): the
chosen box(es), for "add" the grown box, and the undilated mask (DESIGN.md, "Metrics").
"""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
from PIL import Image

from agent.conversation import judge
from agent.conversation.state import Attempt
from tools.config import Settings
from tools.images import box_containing, box_to_mask, grow_box, mask_bbox, union_box
from tools.region import EvalRegion, evaluation_region, rc_labels, score_edit
from tools.types import Box, Cancelled, Detection, EditRequest, EditResult, LocaleditError, Point, Scores, \
    Segmentation, WorkerUnavailableError
from tools.worker.batch import BATCHABLE
from tools.worker.interface import CancelFlag, ProgressFn, Worker

ADD_MARGIN = 0.3
""""add X to Y": the edit region is Y's box grown by this fraction of its size on each side."""

KNOBS = ("guidance_scale", "image_guidance_scale", "strength")
"""The knobs an attempt sets (``agent.conversation.judge.base_knobs``); steps, black mask and size come from settings."""


class NothingFoundError(LocaleditError):
    """Grounding found no object for the target phrase."""


Runner = Callable[..., Any]
"""``runner(tool, fn, *args, **kwargs)`` runs one worker call; ``tool`` is "ground" or "segment".
The graph's runner gives up on Stop and after the tool's time limit; the default calls ``fn``."""


def direct(tool: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The plain :data:`Runner`: call ``fn`` and wait."""
    return fn(*args, **kwargs)


# --------------------------------------------------------------------------- the job


@dataclass
class Job:
    """What to edit, whichever surface asked: the plan's fields the stages read.

    ``phrase`` is what to ground (the target with its identifying attribute, or the noun of an
    "add"'s place); ``bare`` the target alone, grounded when the phrase finds nothing; ``labels``
    CLIP-RC's ``(target category, source category)`` (:func:`tools.region.rc_labels`).
    """

    action: str  # replace | attribute | add | remove | global
    instruction: str
    source_caption: str = ""
    target_caption: str = ""
    phrase: Optional[str] = None
    bare: Optional[str] = None
    labels: tuple[str, str] = ("", "")

    @classmethod
    def from_plan(cls, plan: Any) -> "Job":
        """The job of an ``agent.language.plan.EditPlan``."""
        phrase = plan.grounding_phrase if plan.target else noun_of(plan.region_hint)
        return cls(action=plan.action, instruction=plan.instruction, source_caption=plan.source_caption,
                   target_caption=plan.target_caption, phrase=phrase,
                   bare=plan.target if plan.attribute and plan.target else None,
                   labels=rc_labels(plan.action, plan.target, plan.new_value))

    def request(self, attempt: Attempt, settings: Settings) -> EditRequest:
        """See :func:`request_for`."""
        return request_for(attempt, self, settings)


def noun_of(hint: Optional[str]) -> Optional[str]:
    """'on the table' -> 'table' (what to ground for an 'add' with only a place)."""
    if not hint:
        return None
    words = re.sub(r"^(on|onto|in|into|at|to|under|above|over|next to|beside|behind|near)\s+", "", hint.strip(),
                   flags=re.I)
    words = re.sub(r"^(the|a|an|his|her|their|its|my)\s+", "", words, flags=re.I)
    return words or None


# --------------------------------------------------------------------------- the stages


def ground(worker: Worker, image: Image.Image, job: Job, *, runner: Runner = direct,
           box_threshold: Optional[float] = None, text_threshold: Optional[float] = None) -> list[Detection]:
    """GroundingDINO boxes for ``job.phrase``; nothing found with an attribute ("white cat"): for the bare target.

    No phrase (an "add" with no place) finds nothing. Thresholds None: the worker's configured ones.
    """
    kwargs = {k: v for k, v in (("box_threshold", box_threshold), ("text_threshold", text_threshold))
              if v is not None}
    found = runner("ground", worker.ground, image, job.phrase, **kwargs) if job.phrase else []
    if not found and job.bare:
        found = runner("ground", worker.ground, image, job.bare, **kwargs)
    return list(found)


def target_boxes(action: str, boxes: Sequence[Box], size: tuple[int, int]) -> list[Box]:
    """The boxes the edit is about: the objects' own, or for "add" their union grown by :data:`ADD_MARGIN`
    (where the new thing goes). The segment stage edits them and the score stage measures them."""
    if action == "add" and boxes:
        return [grow_box(union_box(list(boxes)), ADD_MARGIN, size)]
    return list(boxes)


def segment(worker: Worker, image: Image.Image, action: str, boxes: Sequence[Box], *,
            points: Sequence[Point] = (), point_labels: Optional[Sequence[int]] = None,
            runner: Runner = direct) -> Segmentation:
    """The region to edit for the chosen ``boxes`` (x0, y0, x1, y1 pixels): a bool (H, W) mask.

    "add": the grown box itself (``source="add-box"``, no SAM); otherwise SAM from the boxes and
    any ``points`` (``point_labels`` 1 on the object, 0 not; default all 1). An "add" given only
    points takes SAM's mask of the clicked object and grows its box.
    """
    if action == "add" and boxes:
        grown = target_boxes(action, boxes, image.size)[0]
        return Segmentation(mask=box_to_mask(grown, image.size), score=1.0, source="add-box",
                            note="add: the area around the object")
    if points:
        signs = [1] * len(points) if point_labels is None else [int(v) for v in point_labels]
        seg = runner("segment", worker.segment, image, list(boxes), points=list(points), point_labels=signs)
    else:
        seg = runner("segment", worker.segment, image, list(boxes))
    if action == "add":
        found = mask_bbox(seg.mask)
        if found is not None:
            return segment(worker, image, action, [found], runner=runner)
    return seg


def queue_for(action: str, settings: Settings, *, first: Optional[Attempt] = None,
              alternatives: Sequence[int] = (), certain: bool = True) -> list[Attempt]:
    """The judge's attempts for this edit, best guess first (:func:`agent.conversation.judge.attempt_queue`)."""
    return judge.attempt_queue(action, settings, first=first, alternatives=list(alternatives), certain=certain)


def request_for(attempt: Attempt, job: Job, settings: Settings) -> EditRequest:
    """The worker request of one attempt: its editor and knobs, the rest from ``settings``.

    Every knob travels in the request (a remote worker has its own defaults); an attempt's own
    knobs win over the configured ones.
    """
    knobs: dict[str, Any] = {"steps": settings.steps, "guidance_scale": settings.guidance_scale,
                             "image_guidance_scale": settings.image_guidance_scale,
                             "black_mask": settings.black_mask_input, "max_side": settings.max_side}
    knobs.update({k: attempt[k] for k in knobs if attempt.get(k) is not None})
    return EditRequest(editor=attempt["editor"], instruction=job.instruction, source_caption=job.source_caption,
                       target_caption=job.target_caption, seed=attempt["seed"], strength=attempt.get("strength"),
                       **knobs)


def is_masked(editor: str) -> bool:
    """Whether ``editor`` edits inside a region (everything but plain InstructPix2Pix)."""
    return editor != "ip2p"


# --------------------------------------------------------------------------- batched attempts


def batch_limit(worker: Worker, settings: Settings) -> int:
    """How many queued attempts may run with the current one in one batched call
    (``settings.batch_retries``): 0 where the worker has no ``edit_batch`` (a remote worker batches
    its users' requests itself), and for 'auto' 1 where the worker says a batch pays (``batch_pays``:
    on a GPU), else 0."""
    if not callable(getattr(worker, "edit_batch", None)):
        return 0
    if settings.batch_retries != "auto":
        return int(settings.batch_retries)
    pays = getattr(worker, "batch_pays", None)
    return 1 if callable(pays) and pays() else 0


def attempt_key(attempt: Attempt) -> tuple:
    """What makes two attempts the same edit on the same region (the editor, its seed and knobs, the candidate)."""
    return (attempt["editor"], attempt.get("seed"), *(attempt.get(k) for k in KNOBS), attempt.get("candidate"))


def batch_mates(attempt: Attempt, queue: Sequence[Attempt], settings: Settings, limit: int, *,
                baseline_known: bool) -> list[Attempt]:
    """The queued attempts to run in ONE batched call with ``attempt``, at most ``limit``: on
    speculation, since the judge asks for them only if ``attempt`` fails (a "stronger edit", another
    seed) or passes every other check (the lazy baseline of a masked attempt).

    Only attempts of the same InstructPix2Pix pipeline call (:data:`tools.worker.batch.BATCHABLE`) on
    the same region qualify: not another candidate (its own mask), not the baseline once it is known
    or when ``attempt`` gives it for free (its pre-composite output), and with ``crop='all'`` not a
    whole-image attempt next to a masked one (a crop has its own work size). A judge that revises
    the queue (a "weaker edit" instead of the stronger one) simply leaves the speculative result unused.
    """
    if limit <= 0 or attempt.get("candidate") is not None or attempt["editor"] not in BATCHABLE:
        return []
    free = judge.is_free_baseline(attempt, judge.baseline_attempt(settings)) and settings.crop != "all" and \
        not settings.black_mask_input
    mates: list[Attempt] = []
    for queued in queue:
        if len(mates) == limit:
            break
        if queued.get("candidate") is not None or queued["editor"] not in BATCHABLE or \
                (queued.get("baseline") and (baseline_known or free)) or \
                (settings.crop == "all" and is_masked(queued["editor"]) != is_masked(attempt["editor"])) or \
                attempt_key(queued) == attempt_key(attempt):
            continue
        mates.append(queued)
    return mates


def edit_attempts(worker: Worker, image: Image.Image, mask: Optional[np.ndarray], attempt: Attempt,
                  mates: Sequence[Attempt], job: "Job", settings: Settings, *, progress: Optional[ProgressFn] = None,
                  cancel: Optional[CancelFlag] = None) -> tuple[EditResult, list[tuple[Attempt, EditResult]]]:
    """The edit of ``attempt`` (``mask``: the object's, given to masked editors), and in the same batched
    call (``worker.edit_batch``) those of ``mates`` that finished. Raises what the attempt's edit raised."""
    request = request_for(attempt, job, settings)
    own = mask if is_masked(attempt["editor"]) else None
    if not mates:
        return worker.edit(image, own, request, progress=progress, cancel=cancel), []
    answers = worker.edit_batch(image, [own, *(mask if is_masked(m["editor"]) else None for m in mates)],
                                [request, *(request_for(m, job, settings) for m in mates)],
                                progress=progress, cancel=cancel)
    if isinstance(answers[0], BaseException):
        raise answers[0]
    return answers[0], [(m, r) for m, r in zip(mates, answers[1:]) if isinstance(r, EditResult)]


def scoring_region(action: str, boxes: Sequence[Box], mask: Optional[np.ndarray], size: tuple[int, int],
                   source: str) -> Optional[EvalRegion]:
    """The one region every attempt is measured on: the target boxes (for "add" grown) and the object mask.

    None for a global edit (no boxes, no mask).
    """
    if action == "global":
        return None
    return evaluation_region(target_boxes(action, boxes, size) if boxes else [], mask, source=source)


def score(worker: Worker, base: Image.Image, edited: Image.Image, region: Optional[EvalRegion], job: Job,
          edit_region: Optional[np.ndarray] = None) -> Scores:
    """The metrics of one attempt on ``region`` (:func:`tools.region.score_edit`); ``edit_region`` (what a
    masked editor could change) gives the seam."""
    return score_edit(worker, base, edited, region, source_caption=job.source_caption,
                      target_caption=job.target_caption, target_label=job.labels[0], source_label=job.labels[1],
                      edit_region=edit_region)


def judge_attempt(attempt: Attempt, settings: Settings, action: str, queue: Sequence[Attempt], *,
                  region: Optional[EvalRegion] = None, baseline: Optional[dict[str, Any]] = None,
                  run_baseline: Optional[Callable[[], dict[str, Any]]] = None) -> tuple[Attempt, list[Attempt]]:
    """The attempt with its verdict (``problems``, ``failed``, ``combined``), and the queue revised after it.

    The checks are :func:`agent.conversation.judge.problems` for the attempt's editor, on the turn's ``region``
    (its mask fill) and against ``baseline`` (the baseline's scores, when it ran). ``run_baseline()``
    runs and scores the baseline and returns its scores; it is called at most once, only when the
    judge needs the comparison (:func:`agent.conversation.judge.needs_baseline`). The queue is revised by
    :func:`agent.conversation.judge.revise_queue` (worse than the baseline: fall back to it).
    """
    scores = attempt.get("scores") or {}
    fill = region.fill() if region is not None else None
    found = judge.problems(scores, settings, action, attempt["editor"], mask_fill=fill, baseline=baseline)
    if run_baseline is not None and judge.needs_baseline(attempt, found, action, baseline is not None, list(queue),
                                                         settings):
        found = judge.problems(scores, settings, action, attempt["editor"], mask_fill=fill, baseline=run_baseline())
    judged: Attempt = {**attempt, "problems": [p.text for p in found], "failed": [p.kind for p in found],
                       "combined": round(judge.combined(scores, action), 4)}
    return judged, judge.revise_queue(list(queue), judged, judged["failed"])


def failed_attempt(attempt: Attempt, err: Exception) -> Attempt:
    """An attempt whose edit failed (an out-of-memory error, say): recorded, never kept."""
    return {**attempt, "error": str(err), "problems": [str(err)], "failed": ["error"]}


def keep_going(err: Exception, attempts: Sequence[Attempt], queue: Sequence[Attempt]) -> bool:
    """After an attempt's edit failed with ``err``: go on with the queue (True) or raise? A failed
    attempt never discards a finished one; with nothing finished, the next attempt may still work,
    unless the worker itself is unreachable or nothing is left to try. A stop (``Cancelled``: Stop, Ctrl-C)
    is no failure: it always ends the turn, with the step it was stopped at."""
    if isinstance(err, Cancelled):
        return False
    finished = any(not a.get("error") for a in attempts)
    return finished or (not isinstance(err, WorkerUnavailableError) and bool(queue))


def best_index(attempts: Sequence[Attempt]) -> int:
    """Which attempt to keep: a finished one (no ``error``), one without problems first, then the highest
    combined score (the first of equals)."""
    return max(range(len(attempts)),
               key=lambda i: (not attempts[i].get("error"), not attempts[i].get("problems"),
                              attempts[i].get("combined", 0.0), -i))


def next_stage(attempts: Sequence[Attempt], queue: Sequence[Attempt]) -> str:
    """After a verdict: "done" (good enough, or nothing left to try), "segment" (the next attempt is
    another candidate object) or "edit"."""
    if not attempts or not attempts[-1].get("problems") or not queue:
        return "done"
    return "segment" if queue[0].get("candidate") is not None else "edit"


REPORTED = ("editor", "why", "knob", "seed", *KNOBS, "candidate", "indices", "scores", "problems", "failed",
            "combined", "error", "reused")


def attempt_report(attempts: Sequence[Attempt], kept: Optional[int], baseline: Optional[dict[str, Any]] = None,
                   settings: Optional[Settings] = None) -> list[dict[str, Any]]:
    """Every attempt as the JSON reports list it: editor, knobs, scores, verdict, and which was kept.

    Each row: ``{"number", "editor", "why", "knob", "seed", "guidance_scale", "image_guidance_scale",
    "strength", "candidate", "indices", "scores", "problems", "failed" (the checks' kinds), "combined",
    "error", "reused" (the baseline ran already: how), "verdict": "good" | "poor" | "error" | "not judged",
    "kept": bool}``, and for a masked attempt, with ``baseline`` (the baseline's scores) and ``settings``,
    ``"versus_baseline"`` (:func:`agent.conversation.judge.versus_baseline`).
    """
    rows = []
    for n, attempt in enumerate(attempts):
        judged = "problems" in attempt
        verdict = ("error" if attempt.get("error") else "not judged" if not judged
                   else "poor" if attempt["problems"] else "good")
        row = {"number": n + 1, **{k: attempt.get(k) for k in REPORTED}, "verdict": verdict, "kept": n == kept}
        if baseline is not None and settings is not None and judge.is_masked(attempt.get("editor")) and \
                attempt.get("scores"):
            row["versus_baseline"] = judge.versus_baseline(attempt["scores"], baseline, settings)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- the whole run


@dataclass
class EditReport:
    """Everything one run did (the kept attempt's image and scores, and every attempt), for the JSON
    report and the pictures."""

    image: Image.Image  # the kept attempt's edited image, at the input's size
    editor: str  # the kept attempt's editor
    path: str  # "localized" or "global" (no region: plain InstructPix2Pix, the CMU "None" rule)
    request: EditRequest  # the kept attempt's request
    job: Job
    target: Optional[str] = None
    detections: list[Detection] = field(default_factory=list)
    chosen: list[int] = field(default_factory=list)
    box: Optional[Box] = None
    points: list[tuple[float, float, int]] = field(default_factory=list)  # (x, y, label) point prompts given
    segmentation: Optional[Segmentation] = None  # the object region (SAM, the user's, or the grown box for add)
    region: Optional[np.ndarray] = None  # what the kept attempt's editor could change (the mask, dilated)
    boxes: list[Box] = field(default_factory=list)  # the target box(es) the edit was given or chose
    eval_region: Optional[EvalRegion] = None  # what every attempt was scored on
    scores: Optional[Scores] = None  # the kept attempt's
    attempts: list[Attempt] = field(default_factory=list)
    kept: Optional[int] = None  # index into ``attempts``
    baseline: Optional[dict[str, Any]] = None  # the turn's plain InstructPix2Pix: {"how", "scores"} once it ran
    settings: Optional[Settings] = field(default=None, repr=False)  # what the attempts were judged with
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
            "action": self.job.action,
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
            "attempts": attempt_report(self.attempts, self.kept, (self.baseline or {}).get("scores"),
                                       self.settings),
            "kept": None if self.kept is None else self.kept + 1,
            "baseline": judge.baseline_report(self.baseline),
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


Chooser = Callable[[Sequence[Detection], tuple[int, int]], Any]
"""Picks among detections: returns detection indices, or an object with ``indices``, ``alternatives``
and ``certain`` (an ``agent.conversation.select.Choice``); may raise LocaleditError to ask instead."""


def run(worker: Worker, image: Image.Image, job: Job, settings: Settings, *,
        box: Optional[Box] = None, mask: Optional[np.ndarray] = None,
        points: Sequence[Point] = (), point_labels: Optional[Sequence[int]] = None,
        choose: Optional[Chooser] = None, region: Optional[EvalRegion] = None,
        first: Optional[Attempt] = None, score_it: bool = True,
        box_threshold: Optional[float] = None, text_threshold: Optional[float] = None,
        progress: Optional[ProgressFn] = None, cancel: Optional[CancelFlag] = None) -> EditReport:
    """Edit ``image`` as ``job`` says, judging each attempt and retrying as the chat does.

    Args:
        worker: the vision worker (in-process or remote).
        image: the input photo, RGB, any size.
        job: what to do (:meth:`Job.from_plan`); ``job.phrase`` is grounded unless ``box`` / ``mask``
            is given; a job with no phrase, box, mask or points is global (plain InstructPix2Pix).
        settings: the knobs, the editor preference (``editor``), the attempts (``max_attempts``,
            ``auto_retry``) and the judge's thresholds.
        box: a region given directly (x0, y0, x1, y1), skipping grounding; SAM refines it ("add": grown).
        mask: a region given directly (bool, image size), skipping grounding and SAM.
        points, point_labels: SAM point prompts (a click); with ``box``, or with the smallest detection
            of the phrase that contains the first point on the object (none: the points alone).
        choose: which detections to edit (default: the highest-scoring one).
        region: the region to score on (``localedit eval`` gives every editor of a sample the same
            one); default :func:`scoring_region` of this run's boxes and object mask.
        first: the first attempt's ``{"editor", "seed", "knobs", "why"}`` (any left out: the judge's).
        score_it: False skips the metrics, and with them the judge: one attempt.
        box_threshold, text_threshold: GroundingDINO thresholds (None: configured).
        progress: ``progress(step, total)`` during each attempt's diffusion.
        cancel: a flag (``is_set()``) that stops the diffusion at its next step.

    Raises:
        NothingFoundError: the phrase matched nothing in the image.
        LocaleditError: a request the editors cannot run.
    """
    clock = _Stopwatch()
    signs = [1] * len(points) if point_labels is None else [int(v) for v in point_labels]
    report = EditReport(image=image, editor="", path="localized", request=EditRequest(), job=job,
                        target=job.phrase, points=[(float(p[0]), float(p[1]), v) for p, v in zip(points, signs)])
    alternatives: list[int] = []
    certain = True
    source = ""
    if mask is not None:
        report.segmentation = Segmentation(mask=np.asarray(mask, dtype=bool), score=1.0, source="user")
        found = mask_bbox(report.segmentation.mask)
        report.boxes, source = ([found] if found is not None else []), "user-mask"
    elif box is not None or job.phrase or points:
        boxes = [box] if box is not None else []
        source = "box" if box is not None else "points"
        if box is None and job.phrase:
            with clock.stage("ground"):
                report.detections = ground(worker, image, job, box_threshold=box_threshold,
                                           text_threshold=text_threshold)
            if not report.detections and not points:
                raise NothingFoundError(
                    f"No '{job.phrase}' was found in the image; try another wording, a lower "
                    f"--box-threshold, or give the region with --box.")
            if points:  # the detection the click fell in is the object (none: the points alone)
                clicked = next((p for p, v in zip(points, signs) if v == 1), None)
                hit = box_containing(clicked, [d.box for d in report.detections]) if clicked else None
                report.chosen = [hit] if hit is not None else []
            else:
                picked = choose(report.detections, image.size) if choose else [0]
                report.chosen = list(getattr(picked, "indices", picked))
                alternatives = list(getattr(picked, "alternatives", []))
                certain = bool(getattr(picked, "certain", True))
                source = "grounded"
            boxes = [report.detections[i].box for i in report.chosen]
        with clock.stage("segment"):
            report.segmentation = segment(worker, image, job.action, boxes, points=points, point_labels=signs)
        report.boxes = list(boxes) or [b for b in [mask_bbox(report.segmentation.mask)] if b is not None]
    action = job.action
    if report.segmentation is None:  # no region: plain InstructPix2Pix on the whole image (CMU "None" rule)
        report.path, action = "global", "global"
        wanted = (first or {}).get("editor") or judge.primary_editor(job.action, settings)
        if is_masked(wanted):
            report.info["editor_note"] = f"no region given: ran ip2p instead of {wanted}"
        first = {**(first or {}), "editor": "ip2p"}
    elif action == "global":  # a region was given for a plan that had none: edit it as a change of look
        action = "attribute"
    report.box = union_box(report.boxes) if report.boxes else None
    if region is None and report.segmentation is not None:
        region = scoring_region(action, report.boxes, report.segmentation.mask, image.size, source)
    report.eval_region = region
    queue = queue_for(action, settings, first=first, alternatives=alternatives, certain=certain)
    if not score_it:
        queue = queue[:1]  # nothing to judge by
        report.info["judge"] = "not judged: the metrics were skipped (--no-score)"
    segmentation, indices = report.segmentation, list(report.chosen)
    report.settings = settings
    images: list[Optional[Image.Image]] = []
    regions: list[Optional[np.ndarray]] = []
    requests: list[EditRequest] = []
    scored: list[Optional[Scores]] = []
    baseline: dict[str, Any] = {}  # plain InstructPix2Pix, at most once: {"image", "request", "scores", "how"}
    ahead: dict[tuple, tuple[EditResult, Any]] = {}  # by attempt_key: run in an earlier attempt's batched call,
    # with the segmentation it ran on
    batch = batch_limit(worker, settings) if score_it else 0

    def run_baseline() -> dict[str, Any]:
        """The lazy baseline (:func:`judge_attempt`): run, score, remember; its scores."""
        request = request_for(judge.baseline_attempt(settings), job, settings)
        with clock.stage("edit"):
            result = worker.edit(image, None, request, progress=progress, cancel=cancel)
        with clock.stage("score"):
            found = score(worker, image, result.image, region, job)
        baseline.update(image=result.image, request=request, scores=found.to_dict(), how="run for the comparison")
        return baseline["scores"]

    while queue:
        attempt, queue = dict(queue[0]), queue[1:]
        if attempt.get("candidate") is not None and report.detections:  # the judge tries the other object
            indices = [attempt["candidate"]]
            with clock.stage("segment"):
                segmentation = segment(worker, image, action, [report.detections[i].box for i in indices])
        request = request_for(attempt, job, settings)
        edit_mask = segmentation.mask if segmentation is not None and is_masked(attempt["editor"]) else None
        started = time.perf_counter()
        result_image, result_region, scores = None, None, None
        if attempt.get("baseline") and baseline:  # it ran already (free, or for a comparison): no second edit
            result_image, request, attempt["reused"] = baseline["image"], baseline["request"], baseline["how"]
            scores = Scores(**baseline["scores"]) if baseline.get("scores") else None
        elif attempt_key(attempt) in ahead and ahead[attempt_key(attempt)][1] is segmentation:  # it ran already,
            result = ahead.pop(attempt_key(attempt))[0]  # on this region, in the batched call of an earlier attempt
            result_image, result_region, attempt["reused"] = result.image, result.region, result.info["batched"]
            report.info.update(result.info)
        else:
            number = len(report.attempts) + 1
            mates = batch_mates(attempt, queue, settings, batch, baseline_known=bool(baseline))
            try:
                with clock.stage("edit"):
                    result, extra = edit_attempts(worker, image, segmentation.mask if segmentation else None,
                                                  attempt, mates, job, settings, progress=progress, cancel=cancel)
            except LocaleditError as err:  # a failed attempt never discards a finished one
                if not keep_going(err, report.attempts, queue):
                    raise
                report.attempts.append(failed_attempt(attempt, err))
                images.append(None)
                regions.append(None)
                requests.append(request)
                scored.append(None)
                queue = [] if isinstance(err, WorkerUnavailableError) else queue
                continue
            result_image, result_region = result.image, result.region
            report.info.update(result.info)
            for mate, done in extra:
                done.info["batched"] = f"run in one batched call with attempt {number}"
                if mate.get("baseline"):
                    baseline.update(image=done.image, request=request_for(mate, job, settings),
                                    how=done.info["batched"])
                else:
                    ahead[attempt_key(mate)] = (done, segmentation)
            if result.whole is not None and not baseline and judge.is_free_baseline(
                    attempt, judge.baseline_attempt(settings)):
                baseline.update(image=result.whole, request=request_for(judge.baseline_attempt(settings), job,
                                                                         settings),
                                how=f"the pre-composite output of attempt {len(report.attempts) + 1}")
        attempt.update(masked=edit_mask is not None, indices=indices or None,
                       seconds=round(time.perf_counter() - started, 3))
        if score_it:
            with clock.stage("score"):
                if scores is None:
                    scores = score(worker, image, result_image, region, job, edit_region=result_region)
                if baseline and not baseline.get("scores"):
                    baseline["scores"] = score(worker, image, baseline["image"], region, job).to_dict()
            attempt["scores"] = scores.to_dict()
            attempt, queue = judge_attempt(attempt, settings, action, queue, region=region,
                                           baseline=baseline.get("scores"), run_baseline=run_baseline)
        scored.append(scores)
        report.attempts.append(attempt)
        images.append(result_image)
        regions.append(result_region)
        requests.append(request)
        if next_stage(report.attempts, queue) == "done" or not score_it:
            break
    kept = best_index(report.attempts) if score_it else 0
    report.kept = kept
    report.image, report.region, report.request = images[kept], regions[kept], requests[kept]
    report.editor = report.attempts[kept]["editor"]
    if report.attempts[kept].get("indices") and report.attempts[kept]["indices"] != report.chosen:
        report.chosen = list(report.attempts[kept]["indices"])
    report.scores = scored[kept]
    if baseline:
        report.baseline = {"how": baseline["how"], "scores": baseline.get("scores")}
    report.timings = dict(clock.times, total=sum(clock.times.values()))
    return report
