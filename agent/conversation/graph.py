"""The conversation as a LangGraph graph: one user message in, one reply (or a question) out.

    receive -> understand -> ground -> select -> segment -> edit -> score -> judge -> respond
       |           |            \\          \\-> clarify (interrupt) -> segment | understand | receive | respond
       |           |             \\-> (nothing found) respond
       |           +-> segment (a follow-up on the last edit's region or on the region the user
       |           |            selected: no grounding, no SAM; global edits)
       |           +-> command (undo, redo, go to version k, show mask; retry / stronger / other one -> segment)
       |           +-> point ("select the cat on the left", "include the tail": the selection) -> respond
       |           +-> clarify (no referent for "it") ; +-> respond (chat)
       +-> command (the UI's "go to version k")

Nodes read and write ``agent.conversation.state.State``; the vision work goes through a ``Worker`` (this
package never imports torch). Every node is wrapped so a failure becomes one clear sentence in
the reply and the conversation and its images stay as they were.

Cancellation: the turn's cancel flag (``configurable["cancel"]``, any ``is_set()``) is checked
before every node, after every diffusion step (the worker's ``cancel``), and every 50 ms while the
LLM or a vision call runs (those run in a helper thread the turn stops waiting for: ``agent.conversation.node_runtime``,
the node runtime). A stopped turn goes to ``respond`` with a "Stopped" reply and makes no version.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Optional

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt

from agent.conversation import answers, judge, pipeline, referent, replies
from agent.conversation.node_runtime import call, cancel_flag
from agent.conversation.node_runtime import safe as _safe
from agent.conversation.pointing import Pointing, read_typed
from agent.conversation.prefetch import Prefetch
from agent.conversation.replies import Where
from agent.conversation.select import Choice, candidate_order, choose
from agent.conversation.state import Attempt, EditRecord, State, current_path, current_record, show, walk
from agent.conversation.version_commands import CommandNode
from agent.conversation.version_commands import entry as _entry
from agent.language.commands import recognise
from agent.language.parser import ParseContext
from agent.language.plan import Chat, Clarify, EditPlan
from agent.language.vision import hint_detections
from agent.runtime.store import ImageStore, for_preview
from tools.config import Settings
from tools.pictures import overlay, side_by_side
from tools.region import EvalRegion
from tools.types import MAX_TEXT, Cancelled, Detection, LocaleditError, WorkerUnavailableError
from tools.worker import LocalWorker, Worker

log = logging.getLogger(__name__)
HISTORY_TURNS = 8
TOOL_NAMES = {"ground": "the grounding model", "segment": "the segmentation model"}
NODES = ("receive", "understand", "command", "point", "ground", "select", "clarify", "segment", "edit", "score", "judge",
         "respond")


def build_graph(worker: Worker, understander, store: ImageStore, settings: Settings, checkpointer=None):
    """Compile the conversation graph around its components (no hidden globals)."""
    nodes = _Nodes(worker, understander, store, settings)
    g = StateGraph(State)
    for name in NODES:
        g.add_node(name, _safe(name, getattr(nodes, name)))
    g.add_edge(START, "receive")
    g.add_conditional_edges("receive", nodes.route_received, ["understand", "command", "respond"])
    g.add_conditional_edges("understand", nodes.route_understood,
                            ["command", "point", "ground", "segment", "clarify", "respond"])
    g.add_edge("point", "respond")
    g.add_conditional_edges("command", _after("segment"), ["segment", "respond"])
    g.add_conditional_edges("ground", _after("select"), ["select", "respond"])
    g.add_conditional_edges("select", nodes.route_selected, ["segment", "clarify", "respond"])
    g.add_conditional_edges("clarify", nodes.route_answer, ["segment", "understand", "receive", "clarify", "respond"])
    g.add_conditional_edges("segment", _after("edit"), ["edit", "respond"])
    g.add_conditional_edges("edit", _after("score"), ["score", "respond"])
    g.add_conditional_edges("score", _after("judge"), ["judge", "respond"])
    g.add_conditional_edges("judge", nodes.route_judged, ["edit", "segment", "respond"])
    g.add_edge("respond", END)
    return g.compile(checkpointer=checkpointer)


def _after(next_node: str) -> Callable[[State], str]:
    """Go on to ``next_node`` unless the node just wrote a reply (an error or an answer)."""
    def route(state: State) -> str:
        return "respond" if state.get("reply") else next_node
    return route


class _Nodes(CommandNode):
    """The node functions, sharing the worker, the understander, the image store and settings (the
    ``command`` node, the version commands' sub-interpreter, is :class:`agent.conversation.version_commands.CommandNode`)."""

    def __init__(self, worker: Worker, understander, store: ImageStore, settings: Settings):
        self.worker, self.understander, self.store, self.settings = worker, understander, store, settings
        self.prefetch = Prefetch(worker)

    def limit(self, tool: str) -> Optional[float]:
        """Seconds to wait for ``tool`` (``LOCALEDIT_<TOOL>_TIMEOUT``); None for the in-process worker,
        whose calls cannot hang on a network and whose first call loads the model."""
        return None if isinstance(self.worker, LocalWorker) else getattr(self.settings, f"{tool}_timeout")

    def runner(self, tool: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """The pipeline's worker calls (:data:`agent.conversation.pipeline.Runner`) under Stop and the tool's time limit."""
        return call(TOOL_NAMES[tool], fn, *args, timeout=self.limit(tool), **kwargs)

    # --- helpers ------------------------------------------------------------------------------

    @staticmethod
    def plan_of(state: State) -> EditPlan:
        return EditPlan.model_validate(state["plan"])

    @staticmethod
    def detections_of(state: State) -> list[Detection]:
        return [Detection(d["label"], d["score"], tuple(d["box"])) for d in state.get("detections") or []]

    @staticmethod
    def report(state: State, *entries: dict[str, Any]) -> list[dict[str, Any]]:
        return [*(state.get("report") or []), *entries]

    # --- nodes ----------------------------------------------------------------------------------

    def receive(self, state: State) -> State:
        """Start a turn: record the message and any uploaded image (a new version)."""
        whole = (state.get("text") or "").strip()
        text = whole[:MAX_TEXT]
        upload, goto = state.get("upload"), state.get("goto")
        update: dict[str, Any] = {
            "text": text, "understood": None, "plan": None, "overrides": {}, "detections": [], "numbering": [],
            "choice": None, "question": None, "mask": None, "mask_for": None, "attempts": [], "queue": [],
            "turn_region": None, "baseline": None, "ahead": [],
            "reply": None, "base": None, "base_index": None, "rerun": False, "upload": None, "goto": None,
            "report": [], "dropped": state.get("dropped") if state.get("rerun") else None}
        if goto is not None:  # a click on the version strip: not a message
            update["understood"] = {"result": {"kind": "command", "name": "goto", "version": int(goto)},
                                    "path": "ui", "note": ""}
            return update
        update["messages"] = [{"role": "user", "text": text, "image": upload}]
        if upload:
            versions = list(state.get("versions") or [])
            parent = state.get("cursor") if versions else None
            versions.append({"path": upload, "note": "the photo you uploaded", "parent": parent, "child": None,
                             "caption": None, "record": None})
            update.update(versions=show(versions, len(versions) - 1), cursor=len(versions) - 1, selection=None)
            if not text:
                update["reply"] = {"text": replies.GOT_PHOTO, "images": {"current": upload}}
        elif not text:
            update["reply"] = {"text": replies.SAY_SOMETHING}
        if len(whole) > MAX_TEXT:  # never act on a cut instruction: its end may be what it asks
            update["reply"] = {"text": replies.too_long(len(whole), MAX_TEXT),
                               **({"images": {"current": upload}} if upload else {})}
        return update

    def understand(self, state: State) -> State:
        """Turn the message into a plan, command or question: commands at once, else caption + understander."""
        current = current_path(state)
        fast = recognise(state["text"])
        pointing = read_typed(state["text"], state) if fast is None else None
        if pointing is not None:  # "select the cat on the left", "include the tail": the point node
            return {"understood": {"result": pointing, "path": "fast", "note": ""}, "report": self.report(
                state, _entry("understand", True, "a selection, read before the language model"),
                _entry("caption", False, "a selection needs no caption"))}
        if fast is not None:
            update: dict[str, Any] = {"understood": {"result": fast, "path": "fast", "note": ""}, "report": self.report(
                state, _entry("understand", True, "a command, read before the language model"),
                _entry("caption", False, "a command needs no caption"))}
            if fast["kind"] == "chat":
                update["reply"] = {"text": fast["text"]}
            elif current is None and fast.get("name") != "cancel":
                update["reply"] = {"text": replies.UPLOAD_FIRST}
            return update
        record = current_record(state)
        about = referent.of_selection(state.get("selection"), current) or record  # what "it" is
        last = EditPlan.model_validate(about["plan"]) if about and about.get("plan") else None
        self._ground_early(state, current, last, about)
        caption, versions, entry = self._caption(state)
        context = ParseContext(last_plan=last, has_image=current is not None, caption=caption,
                               referent=referent.describe(about), photo=current)
        history = [(m["role"], m["text"]) for m in (state.get("messages") or [])[-HISTORY_TURNS * 2 - 1:-1]]
        started = time.perf_counter()
        understood = call("the language model", self.understander.understand, state["text"], context, history)
        result = understood.result
        update = {"caption": {"path": current, "text": caption, "source": entry.get("source")},
                  "understood": {"result": result.model_dump(), "path": understood.path, "note": understood.note},
                  "report": self.report(state, entry, _entry("understand", True, understood.path,
                                                             seconds=round(time.perf_counter() - started, 3)))}
        if versions is not None:
            update["versions"] = versions
        if current is None and not isinstance(result, Chat):  # an edit, a command or a question about the image
            update["reply"] = {"text": replies.UPLOAD_FIRST}
        elif isinstance(result, Chat):
            update["reply"] = {"text": result.text}
        elif isinstance(result, EditPlan):
            update.update(plan=result.model_dump(), base=current, base_index=state.get("cursor", 0))
            if result.revise_last and record:  # "no, the left one": redo the edit on screen differently
                update.update(base=record["base"], base_index=record["base_index"])
                if referent.same_objects(result, record):  # "no, I wanted a wolf": the same region, on its photo
                    update.update(referent.reuse(record))
            elif result.undo_first:  # "undo that and make the bus green instead": the edit, from further back
                back = walk(state["versions"], state.get("cursor", 0), result.undo_first, forward=False)
                update.update(base=state["versions"][back]["path"], base_index=back)
                if record and back == record.get("base_index") and referent.follows_up(result, record, state["text"]):
                    update.update(referent.reuse(record))  # "undo that and make it red": its region, on its photo
            elif referent.follows_up(result, about, state["text"]):  # "now make it red": the same region
                now = referent.names(about)[0]  # "it" may have come back as the old name ("cat" for the fox)
                update["plan"] = result.model_copy(update={"target": now, "attribute": None}).model_dump()
                update.update(referent.reuse(about))
                why = "the region you selected" if about is not record else "the region of the last edit"
                update["report"] = self.report(update, _entry("ground", False, why))
        elif isinstance(result, Clarify):
            update["question"] = {"text": replies.with_cancel_hint(result.question), "kind": "referent",
                                  "original": state["text"]}
            update["question"]["asked"] = update["question"]["text"]
        return update

    def _ground_early(self, state: State, current: Optional[str], last: Optional[EditPlan], about: Any) -> None:
        """While BLIP-2 captions a new photo, ground what the parser reads without the caption
        (:mod:`agent.conversation.prefetch`; used only if the plan read with it grounds the same phrase)."""
        versions = state.get("versions") or []
        if not (self.settings.overlap_caption and current and versions
                and not versions[state.get("cursor", len(versions) - 1)].get("caption")):
            return  # nothing to overlap: the caption is known (or there is no photo)
        read = getattr(self.understander, "read", None)  # the parser alone
        if read is None:
            return
        reading = read(state["text"], ParseContext(
            last_plan=last, has_image=True, caption=None, referent=referent.describe(about), photo=current))
        if (isinstance(reading, EditPlan) and not (reading.revise_last or reading.undo_first)
                and not referent.follows_up(reading, about, state["text"])):
            self.prefetch.start(current, self.store.open(current), pipeline.Job.from_plan(reading))

    def _grounded(self, path: str, image, job: pipeline.Job) -> list[Detection]:
        """``pipeline.ground``, or the same grounding already run while the caption was made."""
        early = self.prefetch.take(path, job)
        if early is not None:
            try:
                return list(call(TOOL_NAMES["ground"], early.result, timeout=self.limit("ground")))
            except Cancelled:
                raise
            except Exception as err:  # noqa: BLE001 - the early call's failure: ground again, as without it
                log.info("the early grounding failed (%s); grounding again", err)
        return pipeline.ground(self.worker, image, job, runner=self.runner)

    def _caption(self, state: State) -> tuple[Optional[str], Optional[list], dict[str, Any]]:
        """``(caption text, versions with it stored or None if unchanged, report entry)`` for the version on screen.

        A version an edit made is described by its plan's target caption (no BLIP-2); an uploaded
        photo is captioned once (cached on the worker too); a failed caption is remembered for that
        version and not tried again. The caption is context only: failing is not an error.
        """
        versions = state.get("versions") or []
        if not versions:
            return None, None, _entry("caption", False, "no photo yet")
        cursor = state.get("cursor", len(versions) - 1)
        known = versions[cursor].get("caption")
        if known:
            why = {"plan": "described by the plan that made this version", "failed": "it failed before on this "
                   "photo", "blip2": "captioned before"}.get(known.get("source"), "known")
            return known.get("text"), None, _entry("caption", False, why, source=known.get("source"))
        try:
            got = call("the captioner", self.worker.caption, self.store.open(versions[cursor]["path"]),
                       timeout=self.limit("caption"))
            caption = {"text": got.text, "source": "blip2"}
            entry = _entry("caption", True, cache="hit" if got.cache_hit else "miss", source="blip2")
        except Cancelled:
            raise
        except LocaleditError as err:
            log.warning("no caption: %s", err)
            caption = {"text": None, "source": "failed", "error": str(err)}
            entry = _entry("caption", True, f"failed: {err}", source="failed")
        updated = [dict(v) for v in versions]
        updated[cursor]["caption"] = caption
        return caption["text"], updated, entry

    def point(self, state: State) -> State:
        """A typed selection ("select the cat on the left", "include the tail"): SAM's region of it
        becomes the pending ``selection``, the referent of the next edit (``agent.conversation.pointing``); its
        worker calls run under Stop and the per-call time limits."""
        pointed = Pointing(self.worker, self.store, self.runner).typed(state, state["understood"]["result"])
        reply: dict[str, Any] = {"text": pointed.text, "error": pointed.error}
        if pointed.picture:
            reply["images"] = {"selection": pointed.picture}
        update: dict[str, Any] = {"reply": reply, "report": self.report(state, _entry("point", True, "a selection"))}
        if pointed.selection is not None:
            update["selection"] = pointed.selection
        return update

    def ground(self, state: State) -> State:
        """GroundingDINO boxes for the plan's target (with its attribute, then without)."""
        plan = self.plan_of(state)
        job = pipeline.Job.from_plan(plan)
        phrase = job.phrase
        record = current_record(state)
        if (plan.revise_last and record and record.get("base") == state["base"] and record.get("detections")
                and EditPlan.model_validate(record["plan"]).grounding_phrase == phrase):
            # "no, the rightmost one": the same phrase on the same photo finds the same boxes
            detections = record["detections"]
            return {"detections": detections, "numbering": record.get("numbering") or [],
                    "report": self.report(state, _entry("ground", False, "the same photo and phrase as the edit "
                                                                          "it corrects"))}
        image = self.store.open(state["base"])
        started = time.perf_counter()
        found = self._grounded(state["base"], image, job)
        entry = _entry("ground", bool(phrase), "" if phrase else "nothing to ground",
                       seconds=round(time.perf_counter() - started, 3))
        if plan.box is not None and plan.target:  # a vision LLM's box: a hint SAM refines, the rules check
            found, entry["hint"] = hint_detections(found, plan.box, plan.target, not (plan.qualifier or plan.plural))
        if not found and plan.action == "add" and not plan.target:
            return {"plan": plan.model_copy(update={"action": "global"}).model_dump(),
                    "report": self.report(state, entry)}
        return {"detections": [d.to_dict() for d in found], "numbering": candidate_order(found),
                "report": self.report(state, entry)}

    def select(self, state: State) -> State:
        """Pick the object(s) to edit, or prepare a question with the numbered candidates."""
        plan = self.plan_of(state)
        if plan.action == "global":
            return {}
        detections = self.detections_of(state)
        base = self.store.open(state["base"])
        choice = choose(plan, detections, base.size)
        if isinstance(choice, Choice):
            return {"choice": choice.model_dump()}
        if not detections:
            return {"reply": {"text": choice.question}}
        order = candidate_order(detections)
        picture = overlay(base, boxes=[detections[i].box for i in order], numbered=True)
        return {"question": {"text": choice.question, "asked": choice.question, "kind": "candidates", "order": order,
                             "image": self.store.put(picture)}}

    def clarify(self, state: State) -> State:
        """Ask the user (LangGraph interrupt) and read what comes back; runs before any edit.

        The resume value is ``{"text", "upload", "goto"}`` (``Session.send``) or a plain string.
        """
        question = state["question"]
        value = interrupt({"question": question["text"], "image": question.get("image"),
                           "options": [str(n + 1) for n in range(len(question.get("order") or []))]})
        if not isinstance(value, dict):
            value = {"text": value}
        answer = str(value.get("text") or "").strip()[:MAX_TEXT]
        asked = [{"role": "assistant", "text": question["text"], "image": question.get("image")}]
        said = asked + [{"role": "user", "text": answer, "image": None}]
        if value.get("upload") or value.get("goto") is not None:  # a new photo, a version clicked: a new turn
            return {"messages": asked, "question": None, "rerun": True, "text": answer, "upload": value.get("upload"),
                    "goto": value.get("goto")}
        size = self.store.open(state["base"]).size if state.get("base") else (1, 1)
        read = answers.read(answer, question, self.detections_of(state), size)
        report = [_entry("answer", True, read.kind)]  # a new turn: the question's own stages were reported then
        if read.kind == "cancel":
            return {"messages": said, "question": None, "reply": {"text": replies.QUESTION_DROPPED}, "report": report}
        if read.kind == "picked":
            choice = Choice(indices=read.indices, reason="", how="user",
                            total=len(state.get("numbering") or []) or 1)
            numbering = state.get("numbering") or []
            choice.numbers = [numbering.index(i) + 1 for i in read.indices if i in numbering]
            choice.reason = replies.reason(choice.where(self._name(state)))
            return {"messages": said, "question": None, "choice": choice.model_dump(), "report": report}
        if read.kind == "new":  # a command or a new instruction: the question is dropped
            return {"messages": asked, "question": None, "rerun": True, "text": answer,
                    "dropped": question.get("asked") or question["text"]}
        if read.kind == "resolved":  # "which part should be red?" - "the car"
            return {"messages": said, "question": None, "text": read.text, "report": report}
        return {"messages": said, "question": {**question, "text": replies.not_an_answer(
                    question.get("asked") or question["text"])},
                "report": report}

    def _name(self, state: State) -> str:
        plan = self.plan_of(state) if state.get("plan") else None
        return (plan.grounding_phrase or plan.target or pipeline.noun_of(plan.region_hint) or "object") if plan \
            else "object"

    def segment(self, state: State) -> State:
        """SAM mask for the chosen boxes (unless it is known already); a fresh attempt queue for the edit."""
        plan = self.plan_of(state)
        update: dict[str, Any] = {}
        if not state.get("queue") and not state.get("attempts"):
            choice = state.get("choice") or {}
            overrides = state.get("overrides") or {}
            update["queue"] = pipeline.queue_for(
                plan.action, self.settings, first=overrides.get("first"),
                alternatives=choice.get("alternatives") or [], certain=choice.get("certain", True))
        if plan.action == "global":
            return update
        detections = self.detections_of(state)
        indices = (state.get("choice") or {}).get("indices") or [0]
        queue = update.get("queue", state.get("queue") or [])
        if queue and queue[0].get("candidate") is not None:
            indices = [queue[0]["candidate"]]
        if state.get("mask") and state.get("mask_for") == indices:
            update["report"] = self.report(state, _entry("segment", False, "the region of the edit is known"))
            if not state.get("turn_region"):  # a region given by pointing, or kept from the last edit
                boxes = [detections[i].box for i in indices if i < len(detections)]
                update["turn_region"] = {"boxes": [list(b) for b in boxes], "mask": state["mask"]}
            return update
        image = self.store.open(state["base"])
        boxes = [detections[i].box for i in indices]
        started = time.perf_counter()
        seg = pipeline.segment(self.worker, image, plan.action, boxes, runner=self.runner)
        note = seg.note
        if seg.source == "add-box":  # a hat, a vase: the new thing reaches past the object's outline
            note, entry = f"add: the area around the {plan.target}", _entry("segment", False,
                                                                             "add edits the box around it")
        else:
            entry = _entry("segment", True, cache="hit" if seg.cache_hit else "miss",
                           seconds=round(time.perf_counter() - started, 3))
        update.update(mask=self.store.put_mask(seg.mask), mask_for=indices, report=self.report(state, entry))
        if not state.get("turn_region"):  # every attempt is scored on the first region, even another candidate
            update["turn_region"] = {"boxes": [list(b) for b in boxes], "mask": update["mask"]}
        update["choice"] = {**(state.get("choice") or {}), "indices": indices, "mask_note": note}
        return update

    def edit(self, state: State) -> State:
        """Run the next attempt of the queue (diffusion progress goes to the stream; Stop stops it at a step)."""
        plan = self.plan_of(state)
        queue = list(state.get("queue") or [])
        if not queue:
            queue = pipeline.queue_for(plan.action, self.settings)
        attempt, rest = queue[0], queue[1:]
        masked = pipeline.is_masked(attempt["editor"])
        writer = get_stream_writer()
        region_mask = self.store.open_mask(state["mask"]) if state.get("mask") else None
        mask = region_mask if masked else None
        number = len(state.get("attempts") or []) + 1  # "attempt 2 of 3" (the queue may still shrink)
        attempts = number + len(rest)
        started = time.perf_counter()
        done = {**attempt, "masked": mask is not None, "indices": (state.get("choice") or {}).get("indices"),
                "mask": state.get("mask")}
        update: dict[str, Any] = {}
        baseline = state.get("baseline")
        ahead = next((a for a in state.get("ahead") or [] if a["key"] == list(pipeline.attempt_key(attempt))
                      and a["mask"] == state.get("mask")), None)  # the same edit, on the region it has now
        if attempt.get("baseline") and baseline:  # ran already (free, or lazily for a comparison): reuse it
            done.update(path=baseline["path"], region=None, scores=baseline.get("scores"), reused=baseline["how"])
            entry = _entry("edit", False, f"the baseline ran already ({baseline['how']})")
        elif ahead is not None:  # ran already, in the batched call of an earlier attempt
            done.update(path=ahead["path"], region=ahead["region"], reused=ahead["how"])
            entry = _entry("edit", False, f"{attempt['editor']} ran already ({ahead['how']})")
        else:
            mates = pipeline.batch_mates(attempt, rest, self.settings, pipeline.batch_limit(self.worker, self.settings),
                                         baseline_known=bool(baseline))
            try:
                result, extra = pipeline.edit_attempts(
                    self.worker, self.store.open(state["base"]), region_mask, attempt, mates,
                    pipeline.Job.from_plan(plan), self.settings,
                    progress=lambda step, total: writer({
                        "stage": "edit", "step": step, "total": total, "editor": attempt["editor"],
                        "attempt": number, "attempts": attempts, "batch": 1 + len(mates)}),
                    cancel=cancel_flag())
            except LocaleditError as err:  # a failed attempt never discards a finished one
                if not pipeline.keep_going(err, state.get("attempts") or [], rest):
                    raise
                entry = _entry("edit", False, f"{attempt['editor']} failed: {err}")
                return {"attempts": [*(state.get("attempts") or []), pipeline.failed_attempt(done, err)],
                        "queue": [] if isinstance(err, WorkerUnavailableError) else rest,
                        "report": self.report(state, entry)}
            done.update(path=self.store.stage(result.image),  # written only if kept (respond)
                        region=self.store.put_mask(result.region) if result.region is not None else None)
            if result.whole is not None and not baseline and judge.is_free_baseline(
                    attempt, judge.baseline_attempt(self.settings)):
                update["baseline"] = {"path": self.store.stage(result.whole), "scores": None,
                                      "how": f"the pre-composite output of attempt {number}"}
            how = f"run in one batched call with attempt {number}"
            for mate, other in extra:  # on speculation: kept for the judge's next attempts, forgotten if unused
                if mate.get("baseline"):
                    update["baseline"] = {"path": self.store.stage(other.image), "scores": None, "how": how}
                else:
                    update.setdefault("ahead", list(state.get("ahead") or [])).append({
                        "key": list(pipeline.attempt_key(mate)), "mask": state.get("mask"),
                        "path": self.store.stage(other.image), "how": how,
                        "region": self.store.put_mask(other.region) if other.region is not None else None})
            entry = _entry("edit", True, attempt["editor"], seconds=round(time.perf_counter() - started, 3))
        return {"attempts": [*(state.get("attempts") or []), done], "queue": rest, "report": self.report(state, entry),
                **update}

    def score(self, state: State) -> State:
        """The metrics of the newest attempt on the turn's one evaluation region (``tools.region``).

        The region is the chosen object's box(es) and its undilated mask, whatever the attempt's
        editor changed, so every attempt (the whole-image fallback included) is measured alike.
        """
        attempts = list(state["attempts"])
        last, update = attempts[-1], {}
        if not last.get("error") and not last.get("scores"):
            region = last.get("region")
            attempts[-1] = {**last, "scores": self._score(state, last["path"], region and self.store.open_mask(region))}
        baseline = state.get("baseline")
        if baseline and baseline.get("scores") is None:  # the free baseline of an ip2p-composite attempt
            update["baseline"] = {**baseline, "scores": self._score(state, baseline["path"])}
        return {"attempts": attempts, **update}

    def _region(self, state: State) -> Optional[EvalRegion]:
        """The turn's one region (:func:`agent.conversation.pipeline.scoring_region`): the first chosen boxes and mask."""
        plan, turn = self.plan_of(state), state.get("turn_region") or {}
        if not turn.get("mask"):
            return None
        return pipeline.scoring_region(plan.action, [tuple(b) for b in turn["boxes"]],
                                       self.store.open_mask(turn["mask"]), self.store.open(state["base"]).size,
                                       source="chosen")

    def _score(self, state: State, path: str, edit_region: Optional[Any] = None) -> dict[str, Any]:
        """The metrics of the image at ``path`` on the turn's one region (its seam at ``edit_region``)."""
        return pipeline.score(self.worker, self.store.open(state["base"]), self.store.open(path), self._region(state),
                              pipeline.Job.from_plan(self.plan_of(state)), edit_region=edit_region).to_dict()

    def judge(self, state: State) -> State:
        """Record why the newest attempt is poor (if it is) and adapt what is queued next.

        Routing decides whether to retry; a result that only spilled into the background turns
        the queued "stronger edit" into a weaker one (``agent.conversation.judge.revise_queue``).
        """
        attempts = list(state["attempts"])
        last = attempts[-1]
        if last.get("error"):
            return {}
        update: dict[str, Any] = {}

        def run_baseline() -> dict[str, Any]:
            update["baseline"] = self._run_baseline(state)
            return update["baseline"]["scores"]

        attempts[-1], queue = pipeline.judge_attempt(last, self.settings, self.plan_of(state).action,
                                                     state.get("queue") or [], region=self._region(state),
                                                     baseline=(state.get("baseline") or {}).get("scores"),
                                                     run_baseline=run_baseline)
        return {"attempts": attempts, "queue": queue, **update}

    def _run_baseline(self, state: State) -> dict[str, Any]:
        """Plain InstructPix2Pix on the whole image, once per turn, for the comparison (CMU), scored."""
        writer = get_stream_writer()
        request = pipeline.request_for(judge.baseline_attempt(self.settings), pipeline.Job.from_plan(self.plan_of(state)),
                                       self.settings)
        result = self.worker.edit(self.store.open(state["base"]), None, request, cancel=cancel_flag(),
                                  progress=lambda step, total: writer({"stage": "edit", "step": step, "total": total,
                                                                       "editor": judge.BASELINE}))
        path = self.store.stage(result.image)  # written only if kept (respond)
        return {"path": path, "scores": self._score(state, path), "how": "run for the comparison"}

    def _settle(self, state: State, kept: Optional[str] = None) -> None:
        """The end of a turn's staged images (``ImageStore.stage``): the kept attempt's written
        (before respond's update records it as a version), every other one forgotten unwritten."""
        if kept is not None:
            self.store.keep(kept)
        staged = [a["path"] for a in state.get("attempts") or [] if a.get("path") and not a.get("reused")]
        ahead = [a["path"] for a in state.get("ahead") or []]  # batched on speculation: used (reused) or not
        self.store.forget([*staged, *ahead, (state.get("baseline") or {}).get("path")])

    def respond(self, state: State) -> State:
        """Turn the best attempt into a new image version with its edit record, or pass on the reply made."""
        report = self.report(state, *self._score_entries(state))
        if state.get("reply"):
            self._settle(state)
            reply = state["reply"]
            return {"report": report, "messages": [{"role": "assistant", "text": reply["text"],
                                                    "image": next(iter((reply.get("images") or {}).values()), None)}]}
        tried = state.get("attempts") or []
        attempts = [a for a in tried if not a.get("error")]  # a failed attempt never discards a finished one
        if not attempts:
            self._settle(state)
            text = tried[-1]["error"] if tried else replies.NOTHING_TO_EDIT
            return {"reply": {"text": text, "error": bool(tried)}, "report": report,
                    "messages": [{"role": "assistant", "text": text, "image": None}]}
        best = attempts[pipeline.best_index(attempts)]
        self._settle(state, kept=best["path"])
        plan = self.plan_of(state)
        versions = [dict(v) for v in state.get("versions") or []]
        base_index = state.get("base_index")
        if base_index is None:
            base_index = state.get("cursor", 0)
        where = self._where(plan, state, best)
        record = self._record(plan, state, best, base_index, where)
        # described by the plan (or, without a target caption, as the photo it came from): no BLIP-2 until an upload
        inherited = (versions[base_index].get("caption") or {}).get("text") if base_index < len(versions) else None
        versions.append({"path": best["path"], "note": f"the result of \"{plan.instruction}\"" if plan.instruction
                         else "the edited photo", "parent": base_index, "child": None, "record": record,
                         "caption": {"text": plan.target_caption or inherited, "source": "plan"}})
        base, region, boxes = for_preview(self.store.open(state["base"]),
                                          self.store.open_mask(best["region"]) if best.get("region") else None,
                                          tuple(tuple(b) for b in record.get("boxes") or []))
        images = {"edited": best["path"],
                  "before_after": self.store.put_preview(side_by_side(base, for_preview(
                      self.store.open(best["path"]))[0]))}
        if region is not None:
            images["mask"] = self.store.put_preview(overlay(base, mask=region, boxes=boxes))
        understood = state.get("understood") or {}
        note = understood.get("note") if understood.get("path") not in ("offline", "fast", "ui") else ""
        if note:  # how the message was read (an LLM fallback, a repair): the log and the step details, not the reply
            log.info("understanding: %s", note)
            report = [*report, _entry("understood", False, note)]
        details = replies.edit_done(plan.instruction, where, best["editor"], attempts=len(tried),
                                    kept_why=best.get("why", ""), problems=best.get("problems") or [], note="",
                                    knob=f"{best['why']}: {best['knob']}" if best.get("knob") else "")
        text = replies.done(plan.action, plan.new_value, plan.instruction, where,
                            problems=best.get("problems") or [], region_hint=plan.region_hint,
                            rerun=((state.get("overrides") or {}).get("first") or {}).get("why", ""))
        return {"versions": show(versions, len(versions) - 1), "cursor": len(versions) - 1, "report": report,
                "selection": None,
                "reply": {"text": text, "details": details, "images": images, "scores": best.get("scores"),
                          "attempts": pipeline.attempt_report(tried, tried.index(best),
                                                              (state.get("baseline") or {}).get("scores"), self.settings),
                          "baseline": judge.baseline_report(state.get("baseline"))},
                "messages": [{"role": "assistant", "text": text, "image": best["path"]}]}

    @staticmethod
    def _score_entries(state: State) -> list[dict[str, Any]]:
        attempts = [a for a in state.get("attempts") or [] if a.get("scores")]
        if not attempts:
            return []
        return [_entry("score", True, f"{len(attempts)} attempt{'s' * (len(attempts) > 1)}",
                       cache=f"{sum(int(a['scores'].get('cache_hits') or 0) for a in attempts)} CLIP embeddings hit")]

    def _where(self, plan: EditPlan, state: State, best: Attempt) -> Where:
        """Which objects the kept attempt changed and how they were picked (for the reply)."""
        if plan.action == "global":
            return Where("global")
        choice = dict(state.get("choice") or {})
        name = self._name(state)
        indices = best.get("indices") or choice.get("indices") or []
        if not best.get("masked"):
            return Where("fallback", name=name, chosen=len(indices))
        numbering = state.get("numbering") or []
        numbers = [numbering.index(i) + 1 for i in indices if i in numbering]
        if indices != choice.get("indices"):  # the judge tried another candidate and kept it
            return Where("other", name=name, chosen=len(indices), total=len(numbering) or 1, numbers=numbers)
        return Where(choice.get("how") or "only", name=name, chosen=len(indices),
                     total=choice.get("total") or len(numbering) or 1, desc=choice.get("desc") or "",
                     numbers=choice.get("numbers") or numbers, tie=not choice.get("certain", True),
                     asked=choice.get("asked"))

    @staticmethod
    def _record(plan: EditPlan, state: State, best: Attempt, base_index: int, where: Where) -> EditRecord:
        """The new version's edit record (``agent.conversation.state.EditRecord``)."""
        detections = state.get("detections") or []
        chosen = list(best.get("indices") or []) if plan.action != "global" else []
        choice = state.get("choice") or {}
        alternatives = [i for i in choice.get("alternatives") or [] if i not in chosen]
        alternatives += [i for i in state.get("numbering") or [] if i not in chosen and i not in alternatives]
        kept = {"how": where.how, "desc": where.desc, "total": where.total, "numbers": where.numbers,
                "asked": where.asked}
        if where.how == "fallback":  # "try again" on it edits the objects as they were picked
            kept["how"] = choice.get("how") or "only"
        prior = (state.get("versions") or [{}] * (base_index + 1))[base_index].get("record") \
            if base_index < len(state.get("versions") or []) else None
        return {"names": referent.chain(prior if choice.get("how") == "referent" else None, plan),
                "instruction": plan.instruction, "plan": plan.model_dump(), "base": state["base"],
                "base_index": base_index, "detections": detections, "numbering": state.get("numbering") or [],
                "chosen": chosen, "alternatives": alternatives,
                "boxes": [list(detections[i]["box"]) for i in chosen if i < len(detections)],
                "mask": best.get("mask") if plan.action != "global" else None, "region": best.get("region"),
                "where": kept, "editor": best["editor"], "seed": best["seed"], "strength": best["strength"],
                "guidance_scale": best.get("guidance_scale"), "image_guidance_scale": best.get("image_guidance_scale"),
                "scores": best.get("scores"), "certain": choice.get("certain", True)}

    # --- routing ------------------------------------------------------------------------------

    def route_received(self, state: State) -> str:
        if state.get("reply"):
            return "respond"
        return "command" if state.get("understood") else "understand"

    def route_understood(self, state: State) -> str:
        if state.get("reply"):
            return "respond"
        if state.get("question"):
            return "clarify"
        if state["understood"]["result"]["kind"] == "command":
            return "command"
        if state["understood"]["result"]["kind"] == "point":
            return "point"
        return "segment" if state["plan"]["action"] == "global" or state.get("mask") else "ground"

    def route_selected(self, state: State) -> str:
        if state.get("reply"):
            return "respond"
        return "clarify" if state.get("question") else "segment"

    def route_answer(self, state: State) -> str:
        if state.get("reply"):
            return "respond"
        if state.get("rerun"):
            return "receive"
        if state.get("question"):
            return "clarify"
        return "segment" if state.get("choice") else "understand"

    def route_judged(self, state: State) -> str:
        if state.get("reply"):
            return "respond"
        step = pipeline.next_stage(state.get("attempts") or [], state.get("queue") or [])
        return "respond" if step == "done" else step


def mermaid() -> str:
    """The graph as a Mermaid diagram (what the README shows): ``python -m agent.conversation.graph``."""
    return build_graph(None, None, None, Settings(_env_file=None)).get_graph().draw_mermaid()


if __name__ == "__main__":
    print(mermaid())
