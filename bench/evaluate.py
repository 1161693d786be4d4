"""The evaluation harness: run editors over a manifest and report the papers' metrics.

    localedit eval MANIFEST --editors ip2p,ip2p-composite,diffedit,regionwise [--baseline ip2p] --out DIR
        [--limit N] [--shard I/N] [--format auto|jsonl|magicbrush|piebench|ip2p] [--use-gt-masks]
        [--models DIR] [--device cpu|cuda] [--max-side PX] [--steps N] [--seed N] [--concurrency N]
    python -m bench.evaluate ...   (the same)

Every sample goes through every editor (and the baseline) with one seed per sample, through
the chat's pipeline (:func:`agent.conversation.pipeline.run`): ground the target (from the manifest, or from
the offline parser's plan), segment ("add": the object's box grown, as the chat edits it), then
the judge's attempts with the row's editor first, each scored and judged, the best kept
(``--attempts 1``: one attempt, no retry). The baseline's rows stay the plain editor (one
attempt). Each row says how many attempts ran and which was kept (``attempts``, ``kept``,
``kept_editor``), and ``results.jsonl`` lists every attempt (``attempt_log``: editor, knobs,
scores, verdict, kept). When nothing is found, or the instruction has no
subject, plain InstructPix2Pix runs on the whole image (the CMU "None" rule) and the row says
``path = global``. Every editor of a sample, the baseline (``ip2p``, path ``global``) included,
is scored on the sample's ONE evaluation region (:mod:`tools.region`): the manifest's
ground-truth box and mask when it has them, else the box grounded for the target and its SAM
mask, computed once per sample. Which of the detections is the target is picked as the chat picks
it (``agent.conversation.select.chooser`` with the offline parser's plan of the instruction: "the cat
on the left", "all the cats"). Where the chat would ask which one, a sample with a ground-truth box
answers as its user would (the candidate the ground truth overlaps most) and its rows say what was
asked (``asked``); a sample without one is not edited: its rows have status ``asked`` and the
question, and the summary counts them apart from the edits and the errors. So CLIP-RC, CLIP-GC and L1 / L2 outside
compare like with like: the baseline's L1 outside counts every background pixel it moved, and a
masked editor's dilation and feather band count against it (the row's ``scored_on`` says which
region). CLIP-RC's categories come from the manifest (``target_label`` / ``source_label``
fields, or PIE-Bench's ``blended_word``) or from the offline parser's plan (what the target
becomes, and the target). ``--use-gt-masks`` gives the editors the manifest's
ground-truth mask (or box, refined by SAM) instead of grounding; otherwise, when the manifest
has a ground truth, each row records the IoU of the grounded box with it (``gt_iou``) and
whether it hit (IoU >= 0.5).

Output layout (``--out DIR``)::

    DIR/results.jsonl               one JSON row per finished (sample, editor), appended as it goes
    DIR/run.json                    the run's settings (a resumed run must match them)
    DIR/images/<sample>/<editor>.png
    DIR/per_sample.csv, per_sample.json   one row per sample and editor (the COLUMNS below)
    DIR/summary.md, summary.json    means per editor, per-sample deltas against the baseline, ...
    DIR/plots/delta_clip_i.png, delta_clip_dir.png, clip_gc_vs_clip_rc.png

Resuming: a second run with the same ``--out`` skips the (sample, editor) pairs already in
``results.jsonl`` (error rows too, except a worker that could not be reached; give
``--retry-errors`` to run every error again). The tables cover the samples this run
selected, so after sharded runs into one folder a last run without ``--shard`` (nothing left
to compute) writes the tables of them all. ``--limit N`` takes the manifest's first N
samples, then ``--shard I/N`` (I from 0) keeps every N-th of those from the I-th on.

With ``LOCALEDIT_WORKER_URL`` set, ``make_worker`` gives the remote (Ray Serve) worker and
samples run ``--concurrency`` at a time (default 4; 1 with the in-process worker).
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np
from PIL import Image

from agent.conversation.pipeline import EditReport, Job, NothingFoundError, attempt_report, run, scoring_region, segment
from agent.conversation.select import WouldAsk, chooser
from bench import report
from bench.eval_io import Lpips, ResultsLog, is_finished
from bench.manifests import FORMATS, Sample, read_manifest
from tools.config import Settings
from tools.images import iou, load_image, mask_bbox
from tools.region import EvalRegion, evaluation_region, rc_labels
from tools.types import EDITORS, Box, LocaleditError
from tools.worker import Worker

DEFAULT_EDITORS = ("ip2p", "ip2p-composite", "diffedit", "regionwise")
METRIC_COLUMNS = ("clip_rc", "clip_rc_source", "clip_gc", "clip_i", "clip_t", "clip_dir", "clip_crop_t",
                  "l1", "l2", "l1_outside", "l2_outside")
"""The :class:`~tools.types.Scores` columns, R-SIE's Table 2 first (scales: ``tools.types.SCORE_SCALES``)."""
COLUMNS = (
    "sample", "editor", "status", "error", "path", "editor_ran", "attempts", "kept", "region_source", "asked",
    "scored_on",
    "target", "action",
    "rc_target", "rc_source", "instruction",
    *METRIC_COLUMNS, "lpips", "ref_l1", "ref_l2", "gt_iou", "gt_hit", "box", "gt_box", "detections", "seed",
    *(f"t_{s}" for s in report.STAGES), "image", "note", "finished_at",
)
"""The per-sample table's columns. ``t_load`` is the sample's image (and mask) loading, shared by
its editors; ``t_total`` is this editor's time without it."""

RUN_KEYS = ("use_gt_masks", "seed", "steps", "box_threshold", "text_threshold", "attempts")
"""Settings that change results: a resumed run must use the same ones."""

METRICS_VERSION = 2
"""The metric definitions rows are scored with (2: one evaluation region per sample, R-SIE's
CLIP-RC and CLIP-GC on 0-100); a folder scored with other definitions is not resumed."""



# --------------------------------------------------------------------------- configuration


@dataclass
class EvalConfig:
    """What to run and where to write it."""

    out: Path
    editors: Sequence[str] = DEFAULT_EDITORS
    baseline: str = "ip2p"
    limit: Optional[int] = None
    shard: tuple[int, int] = (0, 1)
    use_gt_masks: bool = False
    concurrency: Optional[int] = None  # None: 1 in-process, 4 with a remote worker
    seed: int = 0
    steps: Optional[int] = None  # None: the configured default
    tolerance: float = report.DEFAULT_TOLERANCE
    box_threshold: Optional[float] = None
    text_threshold: Optional[float] = None
    retry_errors: bool = False
    attempts: Optional[int] = None  # the judge's attempts per (sample, editor); None: settings' max_attempts
    plots: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        unknown = [e for e in [*self.editors, self.baseline] if e not in EDITORS]
        if unknown:
            raise LocaleditError(f"Unknown editor {unknown[0]!r}; choose from {', '.join(EDITORS)}.")
        if not self.editors:
            raise LocaleditError("Give at least one editor with --editors.")
        index, count = self.shard
        if not (count >= 1 and 0 <= index < count):
            raise LocaleditError(f"The shard {index}/{count} does not exist: use I/N with 0 <= I < N.")
        if self.limit is not None and self.limit < 1:
            raise LocaleditError("--limit must be at least 1.")
        if self.attempts is not None and not 1 <= self.attempts <= 10:
            raise LocaleditError("--attempts must be between 1 and 10.")

    @property
    def run_editors(self) -> list[str]:
        """The baseline, then the chosen editors, each once."""
        return list(dict.fromkeys([self.baseline, *self.editors]))

    def fingerprint(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in RUN_KEYS}


def parse_shard(text: str) -> tuple[int, int]:
    """``"1/4"`` -> ``(1, 4)``."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match:
        raise LocaleditError(f"The shard {text!r} is not written I/N (for example 0/4).")
    return int(match.group(1)), int(match.group(2))


def select(samples: Iterable[Sample], limit: Optional[int] = None, shard: tuple[int, int] = (0, 1)) -> list[Sample]:
    """The manifest's first ``limit`` samples, then those of ``shard`` = (I, N): indices I, I+N, ..."""
    index, count = shard
    first = itertools.islice(samples, limit) if limit is not None else samples
    return [s for i, s in enumerate(first) if i % count == index]


def sample_seed(sample: Sample, base: int) -> int:
    """The seed every editor uses on ``sample``: the manifest's, else ``base`` + a hash of the id."""
    if sample.seed is not None:
        return int(sample.seed)
    return base + zlib.crc32(sample.id.encode("utf-8")) % 1_000_000


def safe_name(sample_id: str) -> str:
    """A sample id as one folder name."""
    name = re.sub(r"[^\w.-]+", "_", sample_id).strip("._")
    return name or "sample"


# --------------------------------------------------------------------------- one sample


@dataclass
class Prepared:
    """A sample, loaded: the image, its ground truth, and the fields the request needs."""

    sample: Sample
    image: Image.Image
    target: Optional[str]
    source_caption: str
    target_caption: str
    seed: int
    labels: tuple[str, str] = ("", "")  # CLIP-RC's (target category, source category)
    action: str = "replace"  # the parser's action ("global" without a target)
    gt_mask: Optional[np.ndarray] = None
    gt_box: Optional[Box] = None
    reference: Optional[Image.Image] = None
    plan: Any = None  # the offline parser's EditPlan of the instruction (None: it found no edit): which object
    load_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def fill_from_parser(sample: Sample) -> tuple[Optional[str], str, str, tuple[str, str], list[str]]:
    """Target, captions and CLIP-RC's ``(target, source)`` categories: the manifest's, the gaps
    filled from the offline parser's plan.

    Categories: the manifest's ``target_label`` / ``source_label`` fields, else PIE-Bench's
    ``blended_word`` ("cat dog": source, then target), else :func:`tools.region.rc_labels` of the
    parser's plan (the target and what it becomes).
    """
    target, source, dest = sample.target, sample.source_caption, sample.target_caption
    labels = _manifest_labels(sample)
    if target and source and dest and labels is not None:
        return target, source, dest, labels, []
    from agent.language.parser import parse
    from agent.language.plan import EditPlan

    plan = parse(sample.instruction)
    if not isinstance(plan, EditPlan):
        return target, source, dest, labels or ("", target or ""), [
            f"the parser found no edit in the instruction ({type(plan).__name__})"]
    notes = []
    if not target and plan.action != "global" and plan.grounding_phrase:
        target = plan.grounding_phrase
        notes.append(f"target {target!r} from the parser")
    if labels is None:
        labels = rc_labels(plan.action, plan.target or target, plan.new_value)
    return target, source or plan.source_caption, dest or plan.target_caption, labels, notes


def _manifest_labels(sample: Sample) -> Optional[tuple[str, str]]:
    """CLIP-RC's categories as the manifest gives them, or None."""
    meta = sample.meta or {}
    if meta.get("target_label") or meta.get("source_label"):
        return str(meta.get("target_label") or ""), str(meta.get("source_label") or sample.target or "")
    words = str(meta.get("blended_word") or "").split()
    if len(words) == 2:
        return words[1], words[0]
    return None


def sample_action(sample: Sample, target: Optional[str]) -> str:
    """The edit's action as the offline parser reads the instruction (what the chat would do); an
    instruction it cannot read is a "replace" of the target, or global without one."""
    from agent.language.parser import parse
    from agent.language.plan import EditPlan

    plan = parse(sample.instruction)
    if isinstance(plan, EditPlan) and (plan.action != "global" or not target):
        return plan.action
    return "replace" if target else "global"


def sample_plan(sample: Sample, target: Optional[str]) -> Any:
    """The offline parser's ``EditPlan`` of the instruction with the sample's target, to pick among the
    detections as the chat does; None when it reads no localized edit."""
    from agent.language.parser import parse
    from agent.language.plan import EditPlan

    plan = parse(sample.instruction)
    if not isinstance(plan, EditPlan) or plan.action == "global" or not target:
        return None
    return plan if plan.target == target else plan.model_copy(update={"target": target, "attribute": None})


def pick_as_the_chat(prep: Prepared, asked: list[str]) -> Optional[Any]:
    """:func:`agent.conversation.pipeline.run`'s ``choose`` for the sample: the chat's choice. Where the
    chat would ask, the question goes to ``asked`` and, when the sample has a ground-truth box, the
    candidate it overlaps most is the answer (else :class:`~agent.conversation.select.WouldAsk`).
    None (no plan): the highest-scoring detection."""
    if prep.plan is None:
        return None

    def answer(question: WouldAsk, detections: Sequence[Any]) -> Optional[list[int]]:
        asked.append(question.question)
        if prep.gt_box is None:
            return None
        overlap, best = max(((iou(detections[i].box, prep.gt_box), i) for i in question.order), default=(0.0, -1))
        return [best] if overlap > 0 else None

    return chooser(prep.plan, answer)


def job_of(prep: Prepared) -> Job:
    """The pipeline's job for a sample."""
    return Job(action=prep.action, instruction=prep.sample.instruction, source_caption=prep.source_caption,
               target_caption=prep.target_caption, phrase=prep.target, labels=prep.labels)


def prepare(sample: Sample, config: EvalConfig) -> Prepared:
    """Load the sample's image, ground truth and reference; raises LocaleditError if unusable."""
    start = time.perf_counter()
    image = load_image(sample.image)
    target, source, dest, labels, notes = fill_from_parser(sample)
    prepared = Prepared(sample, image, target, source, dest, sample_seed(sample, config.seed), labels=labels,
                        notes=notes, action=sample_action(sample, target), plan=sample_plan(sample, target))
    try:
        prepared.gt_mask = sample.gt_mask(image.size)
    except LocaleditError as err:
        if config.use_gt_masks:
            raise
        prepared.notes.append(f"ground-truth mask unusable ({err})")
    prepared.gt_box = sample.box or (mask_bbox(prepared.gt_mask) if prepared.gt_mask is not None else None)
    if sample.reference is not None:
        try:
            prepared.reference = load_image(sample.reference)
        except LocaleditError as err:
            prepared.notes.append(f"reference image unusable ({err})")
    prepared.load_seconds = time.perf_counter() - start
    return prepared


def _region(prep: Prepared, use_gt: bool) -> tuple[dict[str, Any], str]:
    """:func:`agent.conversation.pipeline.run`'s region arguments and where the region comes from.

    A sample's ``points`` are the user's clicks: they refine the ground-truth box (``use_gt``)
    or pick the grounded detection they fall in, and alone they are the region prompt.
    """
    clicks = {"points": [p[:2] for p in prep.sample.points],
              "point_labels": [p[2] for p in prep.sample.points]} if prep.sample.points else {}
    if use_gt and prep.gt_mask is not None:
        return {"mask": prep.gt_mask}, "gt-mask"
    if use_gt and prep.sample.box is not None:
        return {"box": prep.sample.box, **clicks}, "gt-box+points" if clicks else "gt-box"
    if prep.target:
        return {"target": prep.target, **clicks}, "grounded+points" if clicks else "grounded"
    if clicks:
        return clicks, "points"
    return {}, "none"


def _round(value: Any, digits: int = 4) -> Any:
    return round(value, digits) if isinstance(value, float) else value


def _box_list(box: Optional[Sequence[float]]) -> Optional[list[float]]:
    return [round(float(v), 1) for v in box] if box is not None else None


def sample_region(worker: Worker, prep: Prepared, config: EvalConfig) -> Optional[EvalRegion]:
    """The one region every editor of the sample is scored on (None: a global sample).

    The ground truth when the manifest has it (its box, or the mask's bounding box, and the mask);
    else the target grounded once (the detections the chat picks: :func:`pick_as_the_chat`) and the
    pipeline's region of it (its SAM mask; "add": its box grown, as the chat scores it). None too
    where the chat would ask and nothing answers (the sample's rows say so).
    """
    if prep.gt_mask is not None:
        return evaluation_region([prep.gt_box] if prep.gt_box else [], prep.gt_mask, source="gt-mask")
    if prep.gt_box is not None:
        return evaluation_region([prep.gt_box], source="gt-box")
    if not prep.target:
        return None
    detections = worker.ground(prep.image, prep.target, box_threshold=config.box_threshold,
                               text_threshold=config.text_threshold)
    if not detections:
        return None
    choose = pick_as_the_chat(prep, [])
    try:
        indices = list(choose(detections, prep.image.size).indices) if choose else [0]
    except WouldAsk:
        return None
    boxes = [detections[i].box for i in indices]
    action = "attribute" if prep.action == "global" else prep.action
    return scoring_region(action, boxes, segment(worker, prep.image, action, boxes).mask, prep.image.size,
                          source="grounded")


def pair_settings(settings: Settings, prep: Prepared, editor: str, config: EvalConfig) -> Settings:
    """The settings one (sample, editor) runs with: the sample's seed, the run's steps, and the judge's
    attempts (the baseline: one, the plain editor)."""
    attempts = 1 if editor == config.baseline else (config.attempts or settings.max_attempts)
    return settings.model_copy(update={"seed": prep.seed, "max_attempts": attempts,
                                       **({"steps": config.steps} if config.steps is not None else {})})


def edit_pair(worker: Worker, prep: Prepared, editor: str, config: EvalConfig,
              region: Optional[EvalRegion] = None,
              settings: Optional[Settings] = None) -> tuple[EditReport, str, list[str]]:
    """Run one editor on one sample through the pipeline (the editor first, then the judge's
    attempts), scored on ``region``; when nothing is found, plain InstructPix2Pix (the CMU rule).
    The object is the one the chat picks (:func:`pick_as_the_chat`; raises WouldAsk where the chat
    would ask and the sample has no ground truth to answer with)."""
    kwargs, source = _region(prep, config.use_gt_masks)
    kwargs.pop("target", None)  # the job's phrase: grounded unless a box or mask is given
    settings = pair_settings(settings or Settings(), prep, editor, config)
    job = job_of(prep)
    asked: list[str] = []
    choose = pick_as_the_chat(prep, asked)

    def attempt(**where: Any) -> EditReport:
        return run(worker, prep.image, job, settings, first={"editor": editor}, region=region, choose=choose,
                   box_threshold=config.box_threshold, text_threshold=config.text_threshold, **where)

    start = time.perf_counter()
    try:
        result = attempt(**kwargs)
        if asked:
            result.info["asked"] = asked[0]
            return result, source, [f"the chat would ask {asked[0]!r}; answered with the candidate the "
                                    f"ground truth overlaps most"]
        return result, source, []
    except NothingFoundError:
        searched = time.perf_counter() - start
    job.phrase = None  # nothing to find: the whole image
    result = attempt()
    result.timings["ground"] = searched
    result.timings["total"] = result.timings.get("total", 0.0) + searched
    return result, "none", [f"nothing found for {prep.target!r}: ran ip2p on the whole image (CMU rule)"]


def result_row(prep: Prepared, editor: str, result: EditReport, region_source: str,
               lpips: Lpips, image_path: str, notes: list[str]) -> dict[str, Any]:
    """The table row of a finished edit."""
    scores = result.scores.to_dict() if result.scores else {}
    row: dict[str, Any] = {c: _round(scores.get(c)) for c in METRIC_COLUMNS}
    t0 = time.perf_counter()
    row["lpips"] = _round(lpips(prep.image, result.image))
    lpips_seconds = time.perf_counter() - t0 if lpips.available else None
    if prep.reference is not None:
        from tools.score import masked_l1_l2  # imports torch: not at module level (the CLI imports this module)

        ref = prep.reference.resize(result.image.size, Image.Resampling.LANCZOS)
        row["ref_l1"], row["ref_l2"] = (_round(v) for v in masked_l1_l2(ref, result.image))
    if "ground" in result.timings and prep.gt_box is not None:  # grounding ran: did it find the object?
        found = region_source.startswith("grounded") and result.box is not None
        overlap = iou(result.box, prep.gt_box) if found else 0.0
        row["gt_iou"], row["gt_hit"] = round(overlap, 4), overlap >= 0.5
    timings = {f"t_{k}": round(v, 4) for k, v in result.timings.items() if k in report.STAGES}
    timings["t_lpips"] = None if lpips_seconds is None else round(lpips_seconds, 4)
    timings["t_total"] = round(result.timings.get("total", 0.0) + (lpips_seconds or 0.0), 4)
    if "editor_note" in result.info:
        notes = [*notes, result.info["editor_note"]]
    row.update(timings, status="ok", error=None, path="global" if result.editor == "ip2p" else result.path,
               editor_ran=result.editor, attempts=len(result.attempts),
               kept=None if result.kept is None else result.kept + 1, action=result.job.action,
               attempt_log=attempt_report(result.attempts, result.kept, (result.baseline or {}).get("scores"),
                                          result.settings),
               region_source=region_source, asked=result.info.get("asked"), box=_box_list(result.box),
               scored_on=result.eval_region.source if result.eval_region is not None else None,
               detections=len(result.detections), image=image_path)
    return _base_row(prep.sample, editor, prep, notes) | row


def _base_row(sample: Sample, editor: str, prep: Optional[Prepared], notes: Sequence[str]) -> dict[str, Any]:
    """The columns every row has, finished or failed."""
    row: dict[str, Any] = {c: None for c in COLUMNS}
    row.update(sample=sample.id, editor=editor, instruction=sample.instruction,
               finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    if prep is not None:
        row.update(target=prep.target, seed=prep.seed, gt_box=_box_list(prep.gt_box),
                   t_load=round(prep.load_seconds, 4), rc_target=prep.labels[0] or None,
                   rc_source=prep.labels[1] or None)
    row["note"] = "; ".join([*(prep.notes if prep else []), *notes]) or None
    return row


def asked_row(sample: Sample, editor: str, prep: Prepared, asked: WouldAsk) -> dict[str, Any]:
    """The row of a pair the chat would not have edited: it would ask which one (``asked``)."""
    note = "the chat would ask which one, and no ground truth answers: no edit (say which, or give a box)"
    return _base_row(sample, editor, prep, [note]) | {"status": "asked", "asked": asked.question, "action": prep.action}


def error_row(sample: Sample, editor: str, prep: Optional[Prepared], err: BaseException) -> dict[str, Any]:
    """The table row of a pair that could not run: the reason, no metrics."""
    row = _base_row(sample, editor, prep, [])
    message = str(err).splitlines()[0] if str(err) else ""
    row.update(status="error", error=f"{type(err).__name__}: {message}", error_kind=type(err).__name__)
    return row


# --------------------------------------------------------------------------- the run


class Harness:
    """Runs the selected samples through the editors, logging each finished pair."""

    def __init__(self, worker: Worker, config: EvalConfig, lpips: Optional[Lpips] = None,
                 settings: Optional[Settings] = None):
        self.worker = worker
        self.config = config
        own = getattr(worker, "settings", None)  # the judge's thresholds and knobs: given, the worker's, or the env's
        self.settings = settings or (own if isinstance(own, Settings) else Settings())
        self.lpips = lpips or Lpips()
        self.log = ResultsLog(config.out / "results.jsonl")
        self._bar = None
        self._bar_lock = threading.Lock()

    def _advance(self) -> None:
        with self._bar_lock:
            if self._bar is not None:
                self._bar.update(1)

    def run_sample(self, sample: Sample, todo: list[str]) -> None:
        """Every editor in ``todo`` on ``sample``; failures become error rows."""
        try:
            prep = prepare(sample, self.config)
        except Exception as err:  # a missing or broken file: every pair of the sample fails alike
            for editor in todo:
                self.log.append(error_row(sample, editor, None, err))
                self._advance()
            return
        folder = self.config.out / "images" / safe_name(sample.id)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            region = sample_region(self.worker, prep, self.config)
        except Exception as err:  # the worker failed before any editor ran: every pair fails alike
            for editor in todo:
                self.log.append(error_row(sample, editor, prep, err))
                self._advance()
            return
        for editor in todo:
            try:
                result, source, notes = edit_pair(self.worker, prep, editor, self.config, region, self.settings)
                relative = f"images/{folder.name}/{editor}.png"
                result.image.save(self.config.out / relative)
                row = result_row(prep, editor, result, source, self.lpips, relative, notes)
            except WouldAsk as asked:  # the chat would not have edited: it asks which one
                row = asked_row(sample, editor, prep, asked)
            except Exception as err:  # one failed edit must not stop the run; KeyboardInterrupt does
                row = error_row(sample, editor, prep, err)
            self.log.append(row)
            self._advance()

    def run(self, samples: Sequence[Sample]) -> list[dict[str, Any]]:
        """Run what is not finished yet; returns the rows of ``samples`` x editors, in order."""
        config = self.config
        editors = config.run_editors
        logged = self.log.read()
        work = [(s, [e for e in editors if not is_finished(logged.get((s.id, e)), config.retry_errors)])
                for s in samples]
        work = [(s, todo) for s, todo in work if todo]
        total = len(samples) * len(editors)
        pending = sum(len(todo) for _, todo in work)
        if config.progress:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=total - pending, desc="eval", unit="edit", file=sys.stderr)
        try:
            workers = config.concurrency or default_concurrency(self.worker)
            if workers <= 1:
                for sample, todo in work:
                    self.run_sample(sample, todo)
            else:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    list(pool.map(lambda job: self.run_sample(*job), work))
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
        logged = self.log.read()
        return [logged[(s.id, e)] for s in samples for e in editors if (s.id, e) in logged]


def default_concurrency(worker: Worker) -> int:
    """1 for the in-process worker (one model call at a time anyway), 4 for a remote one."""
    from tools.worker import LocalWorker

    return 1 if isinstance(worker, LocalWorker) else 4


def check_run_settings(config: EvalConfig, extra: dict[str, Any]) -> None:
    """Write ``run.json``; refuse to resume a folder that ran with other result-changing settings."""
    path = config.out / "run.json"
    before = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    if before and (config.out / "results.jsonl").exists() and before.get("metrics_version") != METRICS_VERSION:
        raise LocaleditError(f"{config.out} holds a run scored with other metric definitions "
                             f"(version {before.get('metrics_version', 1)}, now {METRICS_VERSION}); use another --out.")
    if before:
        changed = [k for k in RUN_KEYS if k in before and before[k] != getattr(config, k)]
        if changed and (config.out / "results.jsonl").exists():
            raise LocaleditError(
                f"{config.out} holds a run with other settings ({', '.join(f'{k}={before[k]}' for k in changed)}); "
                f"use another --out or the same settings.")
    known = {k: v for k, v in extra.items() if v is not None}
    path.write_text(json.dumps({**before, **config.fingerprint(), **known, "metrics_version": METRICS_VERSION},
                               indent=2, default=str), encoding="utf-8")


def write_outputs(rows: Sequence[dict[str, Any]], config: EvalConfig, notes: Sequence[str]) -> dict[str, Any]:
    """Tables, summary (Markdown + JSON) and plots of ``rows``; returns the summary."""
    out = config.out
    report.write_table(rows, COLUMNS, out / "per_sample.csv", out / "per_sample.json")
    notes = [*notes, "stage times include loading each model on the first edit that needs it "
                     "(see python -m bench.stages for cold and warm times)"]
    if config.plots:
        _, plot_notes = report.write_plots(rows, config.run_editors, config.baseline, out / "plots")
        notes += plot_notes
    errors = sum(1 for r in rows if r.get("status") != "ok")
    if errors:
        notes.append(f"{errors} pair(s) failed; see the error column of per_sample.csv")
    summary = report.summarize(rows, config.run_editors, config.baseline, tolerance=config.tolerance, notes=notes)
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (out / "summary.md").write_text(report.markdown(summary), encoding="utf-8")
    return summary


def evaluate(samples: Iterable[Sample], worker: Worker, config: EvalConfig, *,
             lpips: Optional[Lpips] = None, manifest: Optional[str] = None,
             settings: Optional[Settings] = None) -> dict[str, Any]:
    """Select, run (resuming), and write every output; returns the summary. ``settings``: the judge's
    thresholds and knobs (default: the worker's, else the environment's)."""
    config.out.mkdir(parents=True, exist_ok=True)
    selected = select(samples, config.limit, config.shard)
    harness = Harness(worker, config, lpips, settings)
    check_run_settings(config, {"manifest": manifest, "editors": config.run_editors, "baseline": config.baseline,
                                "lpips": harness.lpips.note})
    rows = harness.run(selected)
    return write_outputs(rows, config, [harness.lpips.note])


# --------------------------------------------------------------------------- command line


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``eval`` options."""
    p.add_argument("manifest", help="JSONL file, MagicBrush split folder, PIE-Bench mapping_file.json, "
                                    "or InstructPix2Pix dataset folder")
    p.add_argument("--editors", default=",".join(DEFAULT_EDITORS), help="comma-separated editors to compare")
    p.add_argument("--baseline", default="ip2p", help="the editor deltas are taken against (run too)")
    p.add_argument("--out", required=True, help="output folder (a second run there resumes)")
    p.add_argument("--limit", type=int, help="only the manifest's first N samples")
    p.add_argument("--shard", default="0/1", help="I/N: this process takes samples I, I+N, ... (I from 0)")
    p.add_argument("--format", default="auto", choices=["auto", *FORMATS], help="manifest layout")
    p.add_argument("--use-gt-masks", action="store_true",
                   help="edit the manifest's ground-truth mask / box instead of grounding")
    p.add_argument("--concurrency", type=int, help="samples at a time (default 1 in-process, 4 remote)")
    p.add_argument("--seed", type=int, default=0, help="base seed (each sample gets its own from it)")
    p.add_argument("--steps", type=int, help="diffusion steps (default: configured)")
    p.add_argument("--attempts", type=int, help="edits the judge may try per sample and editor before keeping "
                   "the best, as the chat does (1: one attempt; default LOCALEDIT_MAX_ATTEMPTS); the baseline: one")
    p.add_argument("--tolerance", type=float, default=report.DEFAULT_TOLERANCE,
                   help="a delta within +-tolerance counts as neither improved nor degraded")
    p.add_argument("--box-threshold", type=float)
    p.add_argument("--text-threshold", type=float)
    p.add_argument("--retry-errors", action="store_true", help="run the pairs that failed before again")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--models", help="folder of local models (as LOCALEDIT_MODELS_DIR)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: auto)")
    p.add_argument("--max-side", type=int, help="long side the models work at")
    return p


def add_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``eval`` to the ``localedit`` sub-commands; it runs :func:`cmd_eval`."""
    p = subparsers.add_parser("eval", help="run editors over a dataset and compare them with the baseline",
                              description=__doc__.split("\n\n")[0])
    add_arguments(p)
    p.set_defaults(func=cmd_eval)
    return p


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    return EvalConfig(
        out=Path(args.out), editors=[e.strip() for e in args.editors.split(",") if e.strip()],
        baseline=args.baseline, limit=args.limit, shard=parse_shard(args.shard),
        use_gt_masks=args.use_gt_masks, concurrency=args.concurrency, seed=args.seed, steps=args.steps,
        tolerance=args.tolerance, box_threshold=args.box_threshold, text_threshold=args.text_threshold,
        retry_errors=args.retry_errors, attempts=args.attempts, plots=not args.no_plots,
        progress=not args.no_progress)


def cmd_eval(args: argparse.Namespace, worker: Optional[Worker] = None) -> int:
    """``localedit eval``: run, write the outputs, print the summary."""
    config = config_from_args(args)
    samples = read_manifest(args.manifest, args.format)
    overrides = {"models_dir": args.models, "device": args.device, "max_side": args.max_side}
    settings = None  # a worker handed in: its settings
    if worker is None:
        from tools.worker import make_worker

        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
        worker = make_worker(settings)
    summary = evaluate(samples, worker, config, manifest=str(args.manifest), settings=settings)
    print(report.markdown(summary))
    print(f"Wrote {config.out}/per_sample.csv, summary.md, summary.json, images/ and plots/.")
    return 0


def main(argv: Optional[Sequence[str]] = None, worker: Optional[Worker] = None) -> int:
    """``python -m bench.evaluate``; exit 2 on a user error (one line on stderr)."""
    parser = add_arguments(argparse.ArgumentParser(prog="python -m bench.evaluate", description=__doc__.split("\n\n")[0]))
    args = parser.parse_args(argv)
    try:
        return cmd_eval(args, worker)
    except LocaleditError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
