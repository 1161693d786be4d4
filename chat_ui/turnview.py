"""One turn on the page: a parent step with the stages that ran nested inside it (``chat_ui.render``).

The parent step is named for what happened once the turn is over ("Edited the cat in 12 s"); while
it runs each stage is a nested step with its progress (the graph announces each node; diffusion
reports each step). The details a person may want but need not read (editor, knobs, scores,
attempts, the before/after pair) are in the steps, one click away; the reply itself stays short.

Cold start: the first edit of a server run loads the models (a minute on real weights). The model
registry says when each load starts and ends (``ModelRegistry.listen``); :class:`TurnView` shows
it as a "Loading the models" step that lists what is loaded, with times, and what is loading now.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Optional

import chainlit as cl
from chainlit.utils import utc_now

from agent.runtime.session import Reply
from chat_ui import render
from chat_ui.backend import model_registry
from chat_ui.services import backend, image_element

LOADING_STEP = "Loading the models"
"""The name of the step that shows a cold start (``render.loading_title`` names it as it goes)."""


def listen_for_loading(progress: Callable[[dict], None]) -> Callable[[], None]:
    """Forward the model registry's load events as ``{"loading": event}`` to ``progress`` (from the
    loading thread) until the returned function is called. Nothing to forward for a remote worker."""
    registry = model_registry(backend)
    if registry is None:
        return lambda: None
    return registry.listen(lambda event: progress({"loading": event}))


class TurnView:
    """The parent step of one turn and the stage steps nested in it (live, then with details)."""

    def __init__(self):
        caller = cl.context.current_step  # the message's run step: the turn's step sits before the reply
        self.parent = cl.Step(name="Working on it…", type="run", show_input=False, default_open=True,
                              auto_collapse=True, parent_id=caller.id if caller else None)
        self.stages: dict[str, cl.Step] = {}  # "understand", "ground", "segment", "edit:2", ...
        self.ran: set[str] = set()
        self.attempt = 0
        self.loading: Optional[cl.Step] = None  # the cold start's step, once a model load began
        self.loads: list[dict[str, Any]] = []  # the load events so far (render.loading_text)

    async def open(self) -> None:
        self.parent.start = utc_now()  # running: Chainlit keeps it open (auto_collapse closes it at its end)
        await self.parent.send()

    async def _end_stages(self) -> None:
        """Mark the stages still running as ended (they collapse; the next one is open)."""
        for step in self.stages.values():
            if step.end is None:
                step.end = utc_now()
                await step.update()

    async def pump(self, events: asyncio.Queue) -> None:
        while True:
            event = await events.get()
            while not events.empty() and "step" in event:  # only the newest progress when they come fast
                nxt = events.get_nowait()
                if "step" not in nxt:
                    await self.event(event)
                event = nxt
            await self.event(event)

    async def event(self, event: dict[str, Any]) -> None:
        if "loading" in event:
            await self._loaded(event["loading"])
            return
        node = event.get("node")
        if node is not None:
            self.ran.add(node)
        if node in render.STAGES and event.get("event") == "start":
            key = node
            if node == "edit":
                self.attempt += 1
                key = f"edit:{self.attempt}"
            if key not in self.stages:
                await self._end_stages()
                hint = {"plan": {"target": event["target"]}} if event.get("target") else None
                step = cl.Step(name=render.stage_title(node, hint, attempt=self.attempt, attempts=self.attempt),
                               type="tool", parent_id=self.parent.id, show_input=False, default_open=True,
                               auto_collapse=True)
                step.output, step.start = "…", utc_now()  # open while it runs: its progress shows
                self.stages[key] = step
                await step.send()
        elif "step" in event and "total" in event:
            step = self.stages.get(f"edit:{self.attempt}")
            if step is not None:
                step.name = render.stage_title("edit", attempt=event.get("attempt", self.attempt),
                                               attempts=event.get("attempts", self.attempt),
                                               editor=event.get("editor", ""), batch=event.get("batch", 1))
                step.output = render.progress_text(event)
                await step.update()
        elif node in ("score", "judge") and event.get("event") == "start":
            step = self.stages.get(f"edit:{self.attempt}")
            if step is not None:
                step.output = "Scoring the result with CLIP…" if node == "score" else "Judging the result…"
                await step.update()

    async def _loaded(self, event: dict[str, Any]) -> None:
        """A model load started or ended: the cold start's step says what is loaded and what is loading."""
        self.loads.append(event)
        busy = render.loading_busy(self.loads)
        if self.loading is None:
            self.loading = cl.Step(name=LOADING_STEP, type="tool", parent_id=self.parent.id, show_input=False,
                                   default_open=True, auto_collapse=True)
            self.loading.start = utc_now()
            await self.loading.send()
        self.loading.name = render.loading_title(self.loads)
        self.loading.output = render.loading_text(self.loads)
        self.loading.end = None if busy else utc_now()
        await self.loading.update()
        self.parent.name = "Loading the models (once per server run)…" if busy else "Working on it…"
        await self.parent.update()

    async def close(self, reply: Reply, state: dict[str, Any], elapsed: float, details: str = "") -> None:
        """Details into each stage and into the parent (``details``: markdown, e.g. the knobs), the
        parent renamed for what happened; the before/after pair goes with the details."""
        for step in (*self.stages.values(), self.parent):
            step.end = step.end or utc_now()
        if self.loading is not None and self.loading.end is None:
            self.loading.end = utc_now()
            await self.loading.update()
        views = render.turn_steps(reply, state, self.ran)
        by_stage: dict[str, list[render.StepView]] = {}
        for view in views:
            by_stage.setdefault(view.stage, []).append(view)
        target = render.target_of(state)
        for key, step in self.stages.items():
            node = key.split(":")[0]
            parts = by_stage.pop(key, []) + (by_stage.pop(node, []) if node != "edit" else [])
            if node in ("ground", "segment") and target not in ("photo", "selected region"):
                step.name = render.stage_title(node, {"plan": {"target": target}})
            if node == "command":
                step.name = render.command_title(state)
            attempts = state.get("attempts") or []
            if node == "edit" and int(key.split(":")[1]) <= len(attempts):
                number = int(key.split(":")[1])
                step.name = render.stage_title("edit", attempt=number, attempts=len(attempts),
                                               editor=attempts[number - 1].get("editor", ""))
            await self._fill(step, parts, "Stopped here." if reply.error or reply.cancelled else "Done.")
        for stage, parts in by_stage.items():  # details of a stage that did not run here (an answer's boxes)
            step = cl.Step(name=parts[0].name, type="tool", parent_id=self.parent.id, show_input=False)
            await step.send()
            await self._fill(step, parts, "")
        self.parent.name = render.turn_title(reply, state, self.ran, elapsed)
        self.parent.output = details
        await self.parent.update()
        if reply.images.get("before_after"):
            await image_element(reply.images["before_after"], render.alt("before_after"), "large") \
                .send(for_id=self.parent.id)

    @staticmethod
    async def _fill(step: cl.Step, parts: list[render.StepView], empty: str) -> None:
        """A stage's details: the views' text and pictures."""
        step.output = "\n\n".join(f"**{v.name}**\n\n{v.text}" if len(parts) > 1 else v.text for v in parts) or empty
        await step.update()
        for view in parts:
            for alt, picture in view.pictures:
                await image_element(picture, alt).send(for_id=step.id)
