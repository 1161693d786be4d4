"""What the chat UI needs from localedit, without Chainlit.

* ``PanelSettings``: the settings panel's values (editor, strength, steps, seed, auto-retry,
  max long side), validated, and applied on top of the environment's ``Settings``.
* ``Backend``: one ``Conversations`` per panel combination (each assembled by
  ``agent.runtime.assembly.assemble`` from the panel's settings), all sharing the loaded models and the
  SQLite checkpointer file, so changing a setting keeps the thread and reloads nothing. A
  Chainlit thread id is the agent's thread id, so a chat reopened from the sidebar carries on.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.runtime.session import Conversations, Session
from tools.config import Settings
from tools.files import private_dir

EDITORS = ("auto", "ip2p", "ip2p-composite", "diffedit", "regionwise", "inpaint", "qwen-edit", "kontext", "klein")

WorkerFactory = Callable[[Settings, Optional[Any]], Any]
"""``factory(settings, base_worker)``: the worker for one panel combination. ``base_worker`` is the
first worker made (None when making it): share its loaded models where the kind allows."""


class PanelSettings(BaseModel):
    """The values of the chat's settings panel."""

    model_config = ConfigDict(frozen=True)

    editor: Literal["auto", "ip2p", "ip2p-composite", "diffedit", "regionwise", "inpaint", "qwen-edit", "kontext",
                    "klein"] = "auto"
    strength: float = Field(0.7, gt=0, le=1, description="DiffEdit encoding ratio / region-wise strength")
    steps: int = Field(20, ge=1, le=200)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    auto_retry: bool = True
    max_side: int = Field(512, ge=64, le=2048)

    @classmethod
    def from_settings(cls, settings: Settings) -> "PanelSettings":
        """The panel showing ``settings`` (the environment's defaults)."""
        return cls(editor=settings.editor if settings.editor in EDITORS else "auto",
                   strength=settings.encoding_ratio, steps=settings.steps, seed=settings.seed,
                   auto_retry=settings.auto_retry, max_side=settings.max_side)

    @classmethod
    def from_panel(cls, values: dict[str, Any], fallback: "PanelSettings") -> "PanelSettings":
        """Validate what the panel sent; a value that does not fit keeps ``fallback``'s.

        Sliders send floats ("20.0"); whole-number fields are rounded, ``max_side`` to a multiple of 8.
        """
        merged = fallback.model_dump()
        for name, value in values.items():
            if name not in merged or value is None or value == "":
                continue
            try:
                if name in ("steps", "seed", "max_side"):
                    value = int(round(float(value)))
                    if name == "max_side":
                        value -= value % 8
                candidate = {**merged, name: value}
                cls.model_validate(candidate)
                merged = candidate
            except (TypeError, ValueError, ValidationError):
                continue
        return cls.model_validate(merged)

    def apply(self, settings: Settings) -> Settings:
        """``settings`` with this panel's values on top."""
        return settings.model_copy(update={
            "editor": self.editor, "encoding_ratio": float(self.strength), "steps": self.steps,
            "seed": self.seed, "auto_retry": self.auto_retry, "max_side": self.max_side})

    def describe(self) -> str:
        return (f"editor {self.editor}, strength {self.strength:g}, {self.steps} steps, seed {self.seed}, "
                f"auto-retry {'on' if self.auto_retry else 'off'}, max long side {self.max_side}px")


def default_worker(settings: Settings, base: Optional[Any]):
    """The environment's worker (``agent.runtime.assembly.make_worker``); further in-process workers share the
    first one's loaded models."""
    from agent.runtime.assembly import make_worker
    from tools.worker import LocalWorker

    if base is None:
        return make_worker(settings)
    if isinstance(base, LocalWorker):
        return LocalWorker(settings, registry=base.registry)
    return base  # a remote worker: one connection serves every combination


class Backend:
    """The conversations behind the UI, one ``Conversations`` per panel combination.

    Args:
        settings: the environment's settings (default: read now).
        worker_factory: makes each combination's worker (default ``default_worker``).
        understander: the LLM / offline parser shared by all (default: from the settings).
    """

    def __init__(self, settings: Optional[Settings] = None, worker_factory: Optional[WorkerFactory] = None,
                 understander=None):
        self.settings = settings or Settings()
        self.worker_factory = worker_factory or default_worker
        self._understander = understander
        self._base_worker = None
        self._conversations: dict[PanelSettings, Conversations] = {}
        self._lock = threading.Lock()
        private_dir(self.settings.data_dir)  # owner-only, as the conversations make it

    @property
    def defaults(self) -> PanelSettings:
        return PanelSettings.from_settings(self.settings)

    def conversations(self, panel: PanelSettings) -> Conversations:
        """The (cached) conversations object for one panel combination."""
        with self._lock:
            if panel not in self._conversations:
                settings = panel.apply(self.settings)
                worker = self.worker_factory(settings, self._base_worker)
                if self._base_worker is None:
                    self._base_worker = worker
                if self._understander is None:  # one for every combination: the panel changes no LLM setting
                    from agent.runtime.assembly import make_understander

                    self._understander = make_understander(self.settings)
                self._conversations[panel] = Conversations(settings, worker=worker,
                                                           understander=self._understander)
            return self._conversations[panel]

    def session(self, thread_id: str, panel: PanelSettings) -> Session:
        return self.conversations(panel).session(thread_id)

    def close(self) -> None:
        with self._lock:
            for conv in self._conversations.values():
                conv.close()
            self._conversations.clear()


_backend: Optional[Backend] = None
_backend_options: dict[str, Any] = {}
_backend_lock = threading.Lock()


def configure(**options: Any) -> None:
    """Set ``Backend`` arguments (e.g. ``worker_factory``) before the app makes its backend."""
    with _backend_lock:
        if _backend is not None:
            raise RuntimeError("the chat backend is already running; configure it before the first chat")
        _backend_options.update(options)


def get_backend() -> Backend:
    """The process's backend, made on first use from the environment (and ``configure``)."""
    global _backend
    with _backend_lock:
        if _backend is None:
            _backend = Backend(**_backend_options)
        return _backend


def model_registry(backend: Backend) -> Optional[Any]:
    """The model registry of ``backend``'s in-process worker (it loads the models lazily, and says
    so to whoever ``listen``s); None for a remote worker (its models load on its own machine) or
    before the first chat made a worker."""
    registry = getattr(backend._base_worker, "registry", None) if backend._base_worker is not None else None
    return registry if hasattr(registry, "listen") else None
