"""Scripted chat models for the LLM path: ``ScriptedChat`` answers from a script and records what it
was sent; ``call`` / ``calls`` build AI messages with tool calls. Used by ``test_llm`` and
``test_conversation``.
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field


class ScriptedChat(BaseChatModel):
    """A chat model that answers from a script (AIMessage, text, or an exception to raise) and
    records every list of messages it receives."""

    script: list[Any] = Field(default_factory=list)
    received: list[list[BaseMessage]] = Field(default_factory=list)
    bound: list[Any] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        self.received.append(list(messages))
        if not self.script:
            raise AssertionError("the model was asked more often than scripted")
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        message = item if isinstance(item, AIMessage) else AIMessage(content=item)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def bind_tools(self, tools, **kwargs):
        self.bound = list(tools)
        return self


def call(name: str, **args: Any) -> AIMessage:
    """An AI message with one tool call."""
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": "call_1", "type": "tool_call"}])


def calls(*pairs: tuple[str, dict]) -> AIMessage:
    """An AI message with several tool calls."""
    return AIMessage(content="", tool_calls=[{"name": n, "args": a, "id": f"call_{i}", "type": "tool_call"}
                                             for i, (n, a) in enumerate(pairs)])
