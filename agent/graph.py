"""The conversation as a LangGraph graph: one user message in, one reply (or a question) out.

    receive -> understand -> ground -> select -> segment -> edit -> score -> judge -> respond
                   |            \\          \\-> clarify (interrupt) -> segment | understand | respond
                   |             \\-> (nothing found) respond
                   +-> command (undo, redo, show mask; retry / stronger / other one -> ground)
                   +-> clarify (no referent for "it") ; +-> edit (global edits) ; +-> respond (chat)

Nodes read and write ``agent.state.State``; the vision work goes through a ``Worker`` (this
package never imports torch). Every node is wrapped so a failure becomes one clear sentence in
the reply and the conversation and its images stay as they were.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from typing import Any, Callable, Optional

from langgraph.config import get_stream_writer
from langgraph.errors import GraphBubbleUp
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt

from agent import judge
from agent.parser import ParseContext
from agent.plan import Chat, Clarify, Command, EditPlan
from agent.select import Choice, candidate_order, choose, resolve_answer
from agent.state import State, current_path
from agent.store import ImageStore
from tools.config import Settings
from tools.images import box_to_mask, grow_box, overlay, side_by_side, union_box
from tools.types import Detection, EditRequest, LocaleditError
from tools.worker import Worker

log = logging.getLogger(__name__)
MAX_TEXT = 2000
HISTORY_TURNS = 8
ADD_MARGIN = 0.3  # "add X to Y": edit Y's box grown by this fraction of its size on each side


def build_graph(worker: Worker, understander, store: ImageStore, settings: Settings, checkpointer=None):
    """Compile the conversation graph around its components (no hidden globals)."""
    nodes = _Nodes(worker, understander, store, settings)
    g = StateGraph(State)
    for name in ("receive", "understand", "command", "ground", "select", "clarify", "segment",
                 "edit", "score", "judge", "respond"):
        g.add_node(name, _safe(name, getattr(nodes, name)))
    g.add_edge(START, "receive")
    g.add_conditional_edges("receive", _after("understand"), ["understand", "respond"])
    g.add_conditional_edges("understand", nodes.route_understood,
                            ["command", "ground", "segment", "edit", "clarify", "respond"])
    g.add_conditional_edges("command", nodes.route_command, ["ground", "respond"])
    g.add_conditional_edges("ground", _after("select"), ["select", "respond"])
    g.add_conditional_edges("select", nodes.route_selected, ["segment", "clarify", "respond"])
    g.add_conditional_edges("clarify", nodes.route_answer, ["segment", "understand", "respond"])
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


def _safe(name: str, fn: Callable[[State], dict]) -> Callable[[State], dict]:
    """Turn a failure inside a node into a one-sentence reply; the state is left as it was.

    Each run of the node is also announced on the custom stream (what ``Session.send(progress=)``
    receives): ``{"node": name, "event": "start"}``, then ``{"node": name, "event": "end",
    "outcome": "done" | "failed" | "asked", "seconds": s}`` ("asked": an interrupt, the question is open).
    """
    @functools.wraps(fn)
    def node(state: State) -> dict:
        writer = get_stream_writer()
        started, outcome = time.perf_counter(), "done"
        writer({"node": name, "event": "start"})
        try:
            update = fn(state)
            if ((update or {}).get("reply") or {}).get("error"):
                outcome = "failed"
            return update
        except GraphBubbleUp:  # interrupts and other control flow belong to LangGraph
            outcome = "asked"
            raise
        except LocaleditError as err:
            outcome = "failed"
            return {"reply": {"text": str(err), "error": True}}
        except Exception as err:  # noqa: BLE001 - the last net: log it, tell the user one line
            outcome = "failed"
            log.exception("node %s failed", name)
            return {"reply": {"text": f"Something went wrong while I was at the {name} step "
                                      f"({type(err).__name__}); your images and our conversation are unchanged.",
                              "error": True}}
        finally:
            writer({"node": name, "event": "end", "outcome": outcome,
                    "seconds": round(time.perf_counter() - started, 3)})
    return node


class _Nodes:
    """The node functions, sharing the worker, the understander, the image store and settings."""

    def __init__(self, worker: Worker, understander, store: ImageStore, settings: Settings):
        self.worker, self.understander, self.store, self.settings = worker, understander, store, settings

    # --- helpers ------------------------------------------------------------------------------

    @staticmethod
    def plan_of(state: State) -> EditPlan:
        return EditPlan.model_validate(state["plan"])

    def detections_of(self, state: State) -> list[Detection]:
        return [Detection(d["label"], d["score"], tuple(d["box"])) for d in state.get("detections") or []]

    # --- nodes ----------------------------------------------------------------------------------

    def receive(self, state: State) -> dict:
        """Start a turn: record the message and any uploaded image (a new version)."""
        text = (state.get("text") or "").strip()[:MAX_TEXT]
        update: dict[str, Any] = {
            "text": text, "understood": None, "plan": None, "overrides": {}, "detections": [],
            "choice": None, "question": None, "mask": None, "attempts": [], "queue": [], "reply": None,
            "base": None, "base_index": None, "messages": [{"role": "user", "text": text, "image": state.get("upload")}]}
        upload = state.get("upload")
        if upload:
            versions = list(state.get("versions") or [])[: state.get("cursor", -1) + 1]
            versions.append({"path": upload, "note": "the photo you uploaded"})
            update.update(versions=versions, cursor=len(versions) - 1, upload=None,
                          last_plan=None, last_edit=None, selection=None)
            if not text:
                update["reply"] = {"text": "Got your photo. What should I change?",
                                   "images": {"current": upload}}
        elif not text:
            update["reply"] = {"text": "Tell me what to change, e.g. \"turn the cat into a fox\"."}
        return update

    def understand(self, state: State) -> dict:
        """Caption the current image (cached) and turn the message into a plan, command or question."""
        current = current_path(state)
        caption = state.get("caption")
        if current and (not caption or caption.get("path") != current):
            caption = self._caption(current)
        last = state.get("last_plan")
        selected = _selection_on(state, current)
        referent = EditPlan(action="attribute", target=selected.get("label") or "region") if selected else \
            EditPlan.model_validate(last) if last else None  # "make it red": "it" is what was pointed at
        context = ParseContext(last_plan=referent, has_image=current is not None, caption=(caption or {}).get("text"))
        history = [(m["role"], m["text"]) for m in (state.get("messages") or [])[-HISTORY_TURNS * 2 - 1:-1]]
        understood = self.understander.understand(state["text"], context, history)
        result = understood.result
        update: dict[str, Any] = {"caption": caption, "understood": {
            "result": result.model_dump(), "path": understood.path, "note": understood.note}}
        if current is None and isinstance(result, (EditPlan, Command)):
            update["reply"] = {"text": "Please upload a photo first, then tell me what to change."}
        elif isinstance(result, Chat):
            update["reply"] = {"text": result.text}
        elif isinstance(result, EditPlan):
            update.update(plan=result.model_dump(), base=current, base_index=state.get("cursor", 0))
            last_edit = state.get("last_edit")
            if selected and result.action != "global":  # the region pointed at: no grounding, no choosing
                update.update(detections=[{"label": selected.get("label") or result.target or "region", "score": 1.0,
                                           "box": selected["box"]}], mask=selected["mask"],
                              choice={"indices": [0], "reason": "the region you selected", "certain": True,
                                      "alternatives": [], "selected": True})
            elif result.revise_last and last_edit:  # "no, the left one": redo the last edit differently
                update.update(base=last_edit["base"], base_index=_index_of(
                    state.get("versions") or [], last_edit["base"], state.get("cursor", 0)))
        elif isinstance(result, Clarify):
            update["question"] = {"text": result.question, "kind": "referent", "original": state["text"]}
        return update

    def _caption(self, path: str) -> Optional[dict]:
        """The BLIP-2 caption, or None when the captioner is unavailable (it is context only)."""
        try:
            return {"path": path, "text": self.worker.caption(self.store.open(path)).text}
        except LocaleditError as err:
            log.warning("no caption: %s", err)
            return None

    def command(self, state: State) -> dict:
        """Undo, redo, show the mask, cancel; or set up a re-run of the last edit."""
        cmd = Command.model_validate(state["understood"]["result"])
        versions, cursor = state.get("versions") or [], state.get("cursor", 0)
        last_edit, last_plan = state.get("last_edit"), state.get("last_plan")
        if cmd.name in ("undo", "redo"):
            step = -cmd.steps if cmd.name == "undo" else cmd.steps
            target = max(0, min(len(versions) - 1, cursor + step))
            if target == cursor:
                edge = "the original photo" if cmd.name == "undo" else "the newest edit"
                return {"reply": {"text": f"Nothing to {cmd.name}: this is {edge}.",
                                  "images": {"current": versions[cursor]["path"]}}}
            moved = abs(target - cursor)
            return {"cursor": target, "last_plan": None if target == 0 else last_plan, "reply": {
                "text": f"{'Undid' if cmd.name == 'undo' else 'Redid'} {moved} step{'s' * (moved > 1)}: "
                        f"now showing {versions[target]['note']}.",
                "images": {"current": versions[target]["path"]}}}
        if cmd.name == "cancel":
            return {"reply": {"text": "OK, nothing changed."}}
        if not last_edit or not last_plan:
            return {"reply": {"text": "There is no edit yet to show or redo; tell me what to change."}}
        if cmd.name == "show_mask" and not last_edit.get("mask"):
            return {"reply": {"text": "The last edit changed the whole image, so there is no mask to show."}}
        if cmd.name == "show_mask":
            base = self.store.open(last_edit["base"])
            picture = overlay(base, mask=self.store.open_mask(last_edit["mask"]),
                              boxes=[tuple(last_edit["detections"][i]["box"]) for i in last_edit["chosen"]])
            return {"reply": {"text": "Here is the region I edited last time.",
                              "images": {"mask": self.store.put(picture)}}}
        # retry / stronger / weaker / other_candidate: redo the last edit on the image it was made from
        overrides: dict[str, Any] = {"seed": last_edit.get("seed", self.settings.seed) + 1}
        strength = last_edit.get("strength") or self.settings.encoding_ratio
        if cmd.name == "stronger":
            overrides = {"strength": min(1.0, strength + 0.15)}
        elif cmd.name == "weaker":
            overrides = {"strength": max(0.1, strength - 0.15)}
        elif cmd.name == "other_candidate":
            others = [i for i in last_edit.get("alternatives") or []]
            if not others:
                return {"reply": {"text": "There was only one candidate, so there is no other one to edit."}}
            overrides = {"indices": [others[0]]}
        return {"plan": last_plan, "base": last_edit["base"], "overrides": overrides,
                "base_index": _index_of(versions, last_edit["base"], cursor)}

    def ground(self, state: State) -> dict:
        """GroundingDINO boxes for the plan's target (with its attribute, then without)."""
        plan = self.plan_of(state)
        image = self.store.open(state["base"])
        phrase = plan.grounding_phrase if plan.target else _noun_of(plan.region_hint)
        detections = self.worker.ground(image, phrase) if phrase else []
        if not detections and plan.attribute and plan.target:
            detections = self.worker.ground(image, plan.target)
        if not detections and plan.action == "add" and not plan.target:
            return {"plan": plan.model_copy(update={"action": "global"}).model_dump()}
        if not detections and _follows_up(plan, state):
            # "now make it red": the fox we just made may not be detectable yet, but we know where it is
            last = state["last_edit"]
            return {"detections": [last["detections"][i] for i in last["chosen"]]}
        return {"detections": [d.to_dict() for d in detections]}

    def select(self, state: State) -> dict:
        """Pick the object(s) to edit, or prepare a question with the numbered candidates."""
        plan = self.plan_of(state)
        if plan.action == "global":
            return {}
        detections = self.detections_of(state)
        forced = (state.get("overrides") or {}).get("indices")
        if forced is not None:
            return {"choice": {"indices": forced, "reason": "the other candidate", "certain": True,
                               "alternatives": []}}
        base = self.store.open(state["base"])
        choice = choose(plan, detections, base.size)
        if isinstance(choice, Choice):
            return {"choice": {"indices": choice.indices, "reason": choice.reason,
                               "certain": choice.certain, "alternatives": choice.alternatives}}
        if not detections:
            return {"reply": {"text": choice.question}}
        order = candidate_order(detections)
        picture = overlay(base, boxes=[detections[i].box for i in order],
                          numbered=True)
        return {"question": {"text": choice.question, "kind": "candidates", "order": order,
                             "image": self.store.put(picture)}}

    def clarify(self, state: State) -> dict:
        """Ask the user (LangGraph interrupt) and read the answer; runs before any edit."""
        question = state["question"]
        answer = interrupt({"question": question["text"], "image": question.get("image"),
                            "options": [str(n + 1) for n in range(len(question.get("order") or []))]})
        answer = str(answer or "").strip()[:MAX_TEXT]
        messages = [{"role": "assistant", "text": question["text"], "image": question.get("image")},
                    {"role": "user", "text": answer, "image": None}]
        if question["kind"] == "candidates":
            detections = self.detections_of(state)
            size = self.store.open(state["base"]).size
            picked = resolve_answer(answer, detections, size)
            if picked is None and re.fullmatch(r"(?i)\s*(cancel|never ?mind|stop|none|no)\W*", answer):
                return {"messages": messages, "question": None, "reply": {"text": "OK, I left the image as it is."}}
            if picked:
                return {"messages": messages, "question": None, "choice": {
                    "indices": picked, "reason": "you chose", "certain": True, "alternatives": []}}
            # not an answer to the question: treat it as a new instruction
            return {"messages": messages, "question": None, "text": answer}
        # a referent question ("which part should be red?"): put the answer in place of "it"
        original = question["original"]
        text = re.sub(r"\b(it|them|that|this|everything)\b", answer, original, count=1, flags=re.I)
        return {"messages": messages, "question": None, "text": text if text != original else f"{original} {answer}"}

    def segment(self, state: State) -> dict:
        """SAM mask for the chosen boxes; a fresh attempt queue for the edit."""
        plan = self.plan_of(state)
        update: dict[str, Any] = {}
        if not state.get("queue") and not state.get("attempts"):
            choice = state.get("choice") or {}
            overrides = state.get("overrides") or {}
            update["queue"] = judge.attempt_queue(
                plan.action, self.settings, strength=overrides.get("strength"), seed=overrides.get("seed"),
                alternatives=choice.get("alternatives") or [], certain=choice.get("certain", True))
        if plan.action == "global":
            return update
        detections = self.detections_of(state)
        indices = (state.get("choice") or {}).get("indices") or [0]
        queue = update.get("queue", state.get("queue") or [])
        if queue and queue[0].get("candidate") is not None:
            indices = [queue[0]["candidate"]]
        image = self.store.open(state["base"])
        boxes = [detections[i].box for i in indices]
        if plan.action == "add":  # a hat, a vase: the new thing reaches past the object's outline
            mask, note = box_to_mask(grow_box(union_box(boxes), ADD_MARGIN, image.size), image.size), \
                f"add: the area around the {plan.target}"
        elif (state.get("choice") or {}).get("selected"):  # the user's selection is the mask
            mask, note = self.store.open_mask(state["mask"]), "the region you selected"
        else:
            seg = self.worker.segment(image, boxes)
            mask, note = seg.mask, seg.note
        update["mask"] = self.store.put_mask(mask)
        update["choice"] = {**(state.get("choice") or {}), "indices": indices, "mask_note": note}
        return update

    def edit(self, state: State) -> dict:
        """Run the next attempt of the queue (diffusion progress goes to the stream)."""
        plan = self.plan_of(state)
        queue = list(state.get("queue") or [])
        if not queue:  # a global plan straight from understand
            queue = judge.attempt_queue(plan.action, self.settings)
        attempt, rest = queue[0], queue[1:]
        masked = attempt["editor"] != "ip2p"
        writer = get_stream_writer()
        request = EditRequest(editor=attempt["editor"], instruction=plan.instruction,
                              source_caption=plan.source_caption, target_caption=plan.target_caption,
                              seed=attempt["seed"], strength=attempt["strength"])
        mask = self.store.open_mask(state["mask"]) if masked and state.get("mask") else None
        number, attempts = len(state.get("attempts") or []) + 1, len(state.get("attempts") or []) + len(queue)
        result = self.worker.edit(self.store.open(state["base"]), mask, request,
                                  progress=lambda step, total: writer({"stage": "edit", "step": step,
                                                                        "total": total, "editor": attempt["editor"],
                                                                        "attempt": number, "attempts": attempts}))
        done = {**attempt, "path": self.store.put(result.image), "masked": mask is not None,
                "indices": (state.get("choice") or {}).get("indices"),
                "region": self.store.put_mask(result.region) if result.region is not None else None}
        return {"attempts": [*(state.get("attempts") or []), done], "queue": rest}

    def score(self, state: State) -> dict:
        """CLIP metrics of the newest attempt."""
        plan = self.plan_of(state)
        attempts = list(state["attempts"])
        # the region the attempt could change; for the whole-image fallback, the object's mask,
        # so every attempt of a localized edit is measured on the same region
        region = attempts[-1].get("region") or state.get("mask")
        mask = self.store.open_mask(region) if region else None
        boxes = [state["detections"][i]["box"] for i in attempts[-1].get("indices") or []] if mask is not None else []
        box = union_box(boxes) if boxes else None
        scores = self.worker.score(self.store.open(state["base"]), self.store.open(attempts[-1]["path"]),
                                   mask=mask, box=box, source_caption=plan.source_caption,
                                   target_caption=plan.target_caption,
                                   target_text=plan.target_caption or plan.instruction)
        attempts[-1] = {**attempts[-1], "scores": scores.to_dict()}
        return {"attempts": attempts}

    def judge(self, state: State) -> dict:
        """Record why the newest attempt is poor (if it is); routing decides whether to retry."""
        attempts = list(state["attempts"])
        plan = self.plan_of(state)
        last = attempts[-1]
        last["problems"] = judge.problems(last["scores"], self.settings, localized=plan.action != "global")
        last["combined"] = round(judge.combined(last["scores"]), 4)
        return {"attempts": attempts}

    def respond(self, state: State) -> dict:
        """Turn the best attempt into a new image version, or pass on the reply already made."""
        if state.get("reply"):
            reply = state["reply"]
            return {"messages": [{"role": "assistant", "text": reply["text"],
                                  "image": next(iter((reply.get("images") or {}).values()), None)}]}
        attempts = state.get("attempts") or []
        if not attempts:
            return {"reply": {"text": "I had nothing to edit."},
                    "messages": [{"role": "assistant", "text": "I had nothing to edit.", "image": None}]}
        best = max(attempts, key=lambda a: (not a.get("problems"), a.get("combined", 0.0)))
        plan = self.plan_of(state)
        # the new version follows the image it was made from; versions after that (redo) are dropped
        base_index = state.get("base_index")
        if base_index is None:
            base_index = state.get("cursor", 0)
        versions = list(state.get("versions") or [])[: base_index + 1]
        versions.append({"path": best["path"], "note": f"the result of \"{plan.instruction}\"" if plan.instruction
                         else "the edited photo"})
        base = self.store.open(state["base"])
        images = {"edited": best["path"],
                  "before_after": self.store.put(side_by_side(base, self.store.open(best["path"])))}
        if best.get("region"):
            boxes = [tuple(state["detections"][i]["box"]) for i in best.get("indices") or []]
            images["mask"] = self.store.put(overlay(base, mask=self.store.open_mask(best["region"]), boxes=boxes))
        text = _explain(plan, state, attempts, best)
        choice = state.get("choice") or {}
        last_edit = {"base": state["base"], "detections": state.get("detections") or [],
                     "chosen": best.get("indices") or [], "alternatives": [
                         i for i in range(len(state.get("detections") or [])) if i not in (best.get("indices") or [])],
                     "mask": best.get("region"), "seed": best["seed"], "strength": best["strength"],
                     "certain": choice.get("certain", True)}
        return {"versions": versions, "cursor": len(versions) - 1, "last_plan": state["plan"],
                "last_edit": last_edit, "selection": None,
                "reply": {"text": text, "images": images, "scores": best.get("scores"),
                          "attempts": [{k: a.get(k) for k in ("editor", "strength", "seed", "why", "problems", "combined")}
                                       for a in attempts]},
                "messages": [{"role": "assistant", "text": text, "image": best["path"]}]}

    # --- routing ------------------------------------------------------------------------------

    def route_understood(self, state: State) -> str:
        if state.get("reply"):
            return "respond"
        if state.get("question"):
            return "clarify"
        kind = state["understood"]["result"]["kind"]
        if kind == "command":
            return "command"
        if state["plan"]["action"] == "global":
            return "edit"
        return "segment" if (state.get("choice") or {}).get("selected") else "ground"

    def route_command(self, state: State) -> str:
        return "respond" if state.get("reply") else "ground"

    def route_selected(self, state: State) -> str:
        if state.get("reply"):
            return "respond"
        return "clarify" if state.get("question") else "segment"

    def route_answer(self, state: State) -> str:
        if state.get("reply"):
            return "respond"
        return "segment" if state.get("choice") else "understand"

    def route_judged(self, state: State) -> str:
        attempts, queue = state.get("attempts") or [], state.get("queue") or []
        if not attempts[-1].get("problems") or not queue:
            return "respond"
        return "segment" if queue[0].get("candidate") is not None else "edit"


def _follows_up(plan: EditPlan, state: State) -> bool:
    """Whether ``plan`` is about the object the last edit changed (its old or new name)."""
    last_plan, last_edit = state.get("last_plan") or {}, state.get("last_edit") or {}
    names = {last_plan.get("target"), last_plan.get("new_value")} - {None}
    return bool(last_edit.get("chosen")) and state.get("base") == _newest(state) and plan.target in names


def _selection_on(state: State, current: Optional[str]) -> Optional[dict]:
    """The pending selection, if it was made on ``current`` (the image on screen)."""
    selected = state.get("selection")
    return selected if selected and current and selected.get("base") == current else None


def _newest(state: State) -> Optional[str]:
    versions = state.get("versions") or []
    return versions[-1]["path"] if versions else None


def _index_of(versions: list[dict], path: str, default: int) -> int:
    """The newest version showing ``path`` (where a re-run of an edit starts from)."""
    return next((i for i in range(len(versions) - 1, -1, -1) if versions[i]["path"] == path), default)


def _noun_of(hint: Optional[str]) -> Optional[str]:
    """'on the table' -> 'table' (what to ground for an 'add' with only a place)."""
    if not hint:
        return None
    words = re.sub(r"^(on|onto|in|into|at|to|under|above|over|next to|beside|behind|near)\s+", "", hint.strip(),
                   flags=re.I)
    words = re.sub(r"^(the|a|an|his|her|their|its|my)\s+", "", words, flags=re.I)
    return words or None


def _explain(plan: EditPlan, state: State, attempts: list[dict], best: dict) -> str:
    """A short account of what was done, what was tried and why."""
    what = plan.instruction or "the edit"
    where = ""
    if best.get("masked") and (state.get("choice") or {}).get("selected"):
        where = " on the region you selected"
    elif best.get("masked") and state.get("detections"):
        chosen = best.get("indices") or []
        label = plan.target or "region"
        where = f" on the {label}" if len(chosen) == 1 else f" on {len(chosen)} {label}s"
        reason = (state.get("choice") or {}).get("reason")
        if reason and len(state["detections"]) > 1:
            where += f" ({reason})"
    text = f"Done: {what}{where}, with {best['editor']}."
    if len(attempts) > 1:
        text += f" I tried {len(attempts)} edits and kept the best ({best['why']})."
    if best.get("problems"):
        text += " It may still be off: " + "; ".join(best["problems"]) + "."
    understood = state.get("understood") or {}
    if understood.get("note") and understood.get("path") != "offline":  # the offline notice is said once
        text += f" ({understood['note']})"
    return text


def mermaid() -> str:
    """The graph as a Mermaid diagram (what the README shows): ``python -m agent.graph``."""
    return build_graph(None, None, None, Settings(_env_file=None)).get_graph().draw_mermaid()


if __name__ == "__main__":
    print(mermaid())
