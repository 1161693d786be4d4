"""The graph's ``command`` node: the version commands' sub-interpreter.

Undo and redo walk the version tree (``agent.conversation.state``), "go to version k" jumps in it, "show me the
mask" draws the region the version on screen was edited in, "cancel" drops nothing; "try again",
"stronger", "weaker" and "the other one" set up a re-run of the edit on screen (on the image it was
made from, with the knob that editor reads moved: ``agent.conversation.judge.move_knobs``), which the graph
then runs from its ``segment`` node. A mixin of ``agent.conversation.graph``'s node class: it reads ``self.store``,
``self.settings``, ``self.report`` and ``self._name`` from there.
"""

from __future__ import annotations

from typing import Any, Optional

from agent.conversation import judge, replies
from agent.conversation.state import State, current_record, parent_of, show, walk
from agent.language.plan import Command
from tools.pictures import overlay


def entry(stage: str, ran: bool, why: str = "", **extra: Any) -> dict[str, Any]:
    """One line of a turn's stage report: ``{"stage", "ran", "why"?, ...}`` (``agent.runtime.session.summarize``)."""
    return {"stage": stage, "ran": ran, **({"why": why} if why else {}), **extra}


class CommandNode:
    """The ``command`` node and its helpers."""

    def command(self, state: State) -> State:
        """Undo, redo, go to a version, show the mask, cancel; or set up a re-run of the edit on screen."""
        update = self._command(state)
        if state.get("dropped") and update.get("reply"):  # "undo" while a question was open: say what became of it
            update["reply"] = {**update["reply"], "text": replies.dropped(state["dropped"], update["reply"]["text"])}
        return update

    def _command(self, state: State) -> State:
        cmd = state["understood"]["result"]
        versions, cursor = list(state.get("versions") or []), state.get("cursor", 0)
        if cmd["name"] == "goto":
            return self._goto(versions, cursor, int(cmd["version"]))
        cmd = Command.model_validate(cmd)
        if cmd.name in ("undo", "redo"):
            target = walk(versions, cursor, cmd.steps, forward=cmd.name == "redo")
            if target == cursor:
                return {"reply": {"text": replies.nothing_to(cmd.name), "images": {"current": versions[cursor]["path"]}}}
            moved = self._distance(versions, cursor, target)
            return {"cursor": target, "reply": {
                "text": replies.moved("Undid" if cmd.name == "undo" else "Redid", moved, target + 1, len(versions),
                                      versions[target]["note"], asked=cmd.steps),
                "images": {"current": versions[target]["path"]}}}
        if cmd.name == "cancel":
            return {"reply": {"text": replies.NOTHING_CHANGED}}
        last_edit = current_record(state)
        if not last_edit:
            return {"reply": {"text": replies.NO_EDIT_YET}}
        if cmd.name == "show_mask":
            return self._show_mask(versions[cursor]["path"], last_edit)
        last_plan = last_edit["plan"]
        # retry / stronger / weaker / other_candidate: redo the edit on screen on the image it was made from
        first = self._rerun(cmd.name, last_edit, last_plan)
        if "reply" in first:
            return first
        overrides: dict[str, Any] = {"first": first}
        if cmd.name == "other_candidate":
            others = list(last_edit.get("alternatives") or [])
            if not others:
                edited = len(last_edit.get("chosen") or [])
                return {"reply": {"text": replies.all_edited(edited, self._name({"plan": last_plan}))
                                  if edited > 1 else replies.ONLY_CANDIDATE}}
            overrides["indices"] = [others[0]]
        update: dict[str, Any] = {"plan": last_plan, "base": last_edit["base"], "overrides": overrides,
                                  "base_index": last_edit["base_index"]}
        if last_plan.get("action") != "global":
            update.update(self._rerun_region(last_edit, overrides.get("indices")))
            update["report"] = self.report(state, entry("ground", False, "the candidates of the version on screen"))
        return update

    @staticmethod
    def _distance(versions: list, start: int, target: int) -> int:
        """How many undo / redo steps lie between two versions on one line."""
        steps, at = 0, target
        while at is not None and at != start:
            at, steps = parent_of(versions, at), steps + 1
        if at == start:
            return steps
        steps, at = 0, start
        while at is not None and at != target:
            at, steps = parent_of(versions, at), steps + 1
        return steps

    def _goto(self, versions: list, cursor: int, number: int) -> dict:
        if not 1 <= number <= len(versions):
            return {"reply": {"text": replies.no_such_version(number, len(versions))}}
        target = number - 1
        return {"cursor": target, "versions": show(versions, target), "reply": {
            "text": replies.showing_version(number, len(versions), versions[target]["note"]),
            "images": {"current": versions[target]["path"]}}}

    def _show_mask(self, current: str, record: dict) -> dict:
        """The region the version on screen was edited in, drawn over it, with the chosen boxes."""
        region = record.get("region") or record.get("mask")
        if not region:
            return {"reply": {"text": replies.WHOLE_IMAGE, "images": {"current": current}}}
        picture = overlay(self.store.open(current), mask=self.store.open_mask(region),
                          boxes=[tuple(b) for b in record.get("boxes") or []])
        return {"reply": {"text": replies.MASK_SHOWN, "images": {"mask": self.store.put_preview(picture), "current": current}}}

    @staticmethod
    def _rerun_region(record: dict, indices: Optional[list[int]]) -> dict[str, Any]:
        """The state update that edits ``record``'s objects (or the candidates ``indices``) again."""
        where = dict(record.get("where") or {})
        chosen = list(record.get("chosen") or [])
        numbering = list(record.get("numbering") or [])
        if indices is None:  # the same objects, the same mask: no grounding, no SAM
            return {"detections": record["detections"], "numbering": numbering, "mask": record.get("mask"),
                    "mask_for": chosen, "choice": {
                        "indices": chosen, "certain": True, "alternatives": list(record.get("alternatives") or []),
                        "how": where.get("how", "only"), "desc": where.get("desc", ""),
                        "total": where.get("total", len(numbering) or 1), "numbers": where.get("numbers", []),
                        "asked": where.get("asked"), "reason": "the same objects as before"}}
        rest = [i for i in record.get("alternatives") or [] if i not in indices] + chosen
        return {"detections": record["detections"], "numbering": numbering, "mask": None, "mask_for": None,
                "choice": {"indices": list(indices), "certain": True, "alternatives": rest, "how": "other",
                           "total": len(numbering) or 1, "reason": "the other candidate",
                           "numbers": [numbering.index(i) + 1 for i in indices if i in numbering]}}

    def _rerun(self, name: str, last_edit: dict, last_plan: dict) -> dict:
        """The first attempt of a re-run of the last edit: its editor and knobs, moved as ``name`` says.

        "stronger" / "weaker" move the knob that editor reads (:func:`agent.conversation.judge.move_knobs`) with
        the same seed, so only the knob changes; "try again" keeps the knobs and takes the next seed
        (for an editor that reads no seed, :data:`agent.conversation.judge.SEEDLESS_EDITORS`, it says so instead).
        """
        editor = last_edit.get("editor") or judge.primary_editor(last_plan["action"], self.settings)
        seed = int(last_edit.get("seed", self.settings.seed))
        knobs = judge.base_knobs(editor, self.settings, last_edit)
        if name in ("stronger", "weaker"):
            move = judge.move_knobs(editor, knobs, +1 if name == "stronger" else -1)
            if not move.moved:
                hint = (f"say \"{'weaker' if name == 'stronger' else 'stronger'}\" to change it"
                        if editor in judge.SEEDLESS_EDITORS else "say \"try again\" for another seed")
                return {"reply": {"text": f"The {editor} edit is already as {name} as it goes ({move.text}); "
                                          f"{hint}."}}
            return {"editor": editor, "seed": seed, "knobs": move.knobs, "why": name, "knob": move.text}
        if name == "retry" and editor in judge.SEEDLESS_EDITORS:  # another seed would give the same pixels
            return {"reply": {"text": f"The {editor} edit draws no random noise, so trying it again would give "
                                      f"the same picture; say \"stronger\" or \"weaker\" to change it."}}
        if name == "retry":
            return {"editor": editor, "seed": seed + 1, "knobs": knobs, "why": "try again",
                    "knob": f"seed {seed} -> {seed + 1}"}
        return {"editor": editor, "seed": seed, "knobs": knobs, "why": "the other candidate"}
