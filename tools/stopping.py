"""Abandoned work stops: a model call whose answer is no longer wanted stops at its next layer.

The turn runs a slow call in a helper thread and stops waiting for it on Stop or after the call's time
limit (``agent.conversation.node_runtime.call``). That thread sets the call's flag here with
:func:`abandon_flag`, and sets the flag when it gives the call up. The in-process worker then runs each
non-diffusion model (GroundingDINO, SAM, BLIP-2, CLIP) under :func:`stop_between_blocks`: forward
pre-hooks on the model's blocks, added only while a call with a flag runs and removed after, raise
:class:`~tools.types.Cancelled` once the flag is set, so an abandoned detector stops within one block
instead of computing to the end beside the next turn. Diffusion editors stop at their next step
(``tools.edit.cancellable``) with the same flag.

The hooks sit on the shared model, so they are only correct while one call uses it at a time: the
in-process worker's run lock and the worker service's model lock make it so. Torch-free at import
(the agent imports this module; torch loads only when hooks are added).
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Any, Iterable, Iterator, Optional

from tools.types import Cancelled, CancelFlag

_FLAG: ContextVar[Optional[CancelFlag]] = ContextVar("localedit_abandon_flag", default=None)


@contextlib.contextmanager
def abandon_flag(flag: Optional[CancelFlag]) -> Iterator[None]:
    """Run the block as a call that is given up once ``flag`` is set (None: never)."""
    token = _FLAG.set(flag)
    try:
        yield
    finally:
        _FLAG.reset(token)


def current_flag() -> Optional[CancelFlag]:
    """The flag of the call this thread runs (:func:`abandon_flag`), or None."""
    return _FLAG.get()


class AnyFlag:
    """Set when any of its flags is set (the turn's Stop and the call's own abandonment)."""

    def __init__(self, *flags: Optional[CancelFlag]):
        self.flags = [f for f in flags if f is not None]

    def is_set(self) -> bool:
        return any(f.is_set() for f in self.flags)


def either(*flags: Optional[CancelFlag]) -> Optional[CancelFlag]:
    """One flag set when any of ``flags`` is; None when none is given, the flag itself when one is."""
    given = [f for f in flags if f is not None]
    return None if not given else given[0] if len(given) == 1 else AnyFlag(*given)


def blocks(model: Any) -> list[Any]:
    """The blocks of a ``torch.nn.Module``: every module held in a ``ModuleList`` (the layers of its
    encoders and decoders, the backbone's stages and their blocks). Empty for anything else."""
    import torch

    if not isinstance(model, torch.nn.Module):
        return []
    return [child for module in model.modules() if isinstance(module, torch.nn.ModuleList) for child in module]


@contextlib.contextmanager
def stop_between_blocks(models: Iterable[Any], flag: Optional[CancelFlag] = None,
                        what: str = "the model") -> Iterator[None]:
    """Run the block so that it raises ``Cancelled`` at the next block of ``models`` once ``flag``
    (default: :func:`current_flag`) is set. Without a flag nothing is added; a flag already set stops
    the call before it starts. The hooks are removed when the block ends, however it ends."""
    flag = flag if flag is not None else current_flag()
    if flag is None:
        yield
        return
    if flag.is_set():
        raise Cancelled(f"The call to {what} was given up before it started.")

    def check(module: Any, args: Any) -> None:
        if flag.is_set():
            raise Cancelled(f"The call to {what} was given up; it stopped at {type(module).__name__}.")

    handles = [block.register_forward_pre_hook(check) for model in models for block in blocks(model)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


__all__ = ["AnyFlag", "abandon_flag", "blocks", "current_flag", "either", "stop_between_blocks"]
