"""The LLM path against real HTTP servers: scripted OpenAI-compatible servers on 127.0.0.1 that answer
the way the servers people run do, driven by the real ``ChatOpenAI`` that ``make_llm`` builds.

=================  ===========================================================================
server             answers a request that carries tool definitions with
=================  ===========================================================================
``tools``          a native tool call (a server with tool parsing: vLLM with
                   ``--enable-auto-tool-choice``, OpenAI)
``vllm``           400 ``"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser``
``ollama``         400, plain text: ``... does not support tools``
``llamacpp``       500 ``tools param requires --jinja flag`` (llama.cpp without ``--jinja``)
``garbage``        200 and an endless stream of random bytes
``hang``           nothing, ever
=================  ===========================================================================

Without tools, the first four answer like a small model: a sentence of prose around a JSON tool
call. Each turn must end in a correct plan within the turn's budget, by the path the test names.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

import pytest

from agent.language.llm import Understander
from agent.language.llm_client import make_llm
from agent.language.parser import ParseContext
from agent.language.plan import Command, EditPlan
from tests.conftest import free_port
from tools.config import Settings

PLANS: dict[str, list[dict[str, Any]]] = {
    "turn the cat into a fox": [{"name": "edit_region", "arguments": {
        "action": "replace", "target": "cat", "new_value": "fox", "source_caption": "a cat on a sofa",
        "target_caption": "a fox on a sofa"}}],
    "make the car red": [{"name": "edit_region", "arguments": {"action": "attribute", "target": "car",
                                                               "new_value": "red"}}],
    "remove the horse": [{"name": "reply", "arguments": {"text": "Remove the horse from the photo."}}],
    "transforme le chat en renard": [{"name": "edit_region", "arguments": {
        "action": "replace", "target": "cat", "new_value": "fox"}}],
    "turn the leftmost cat into a fox": [{"name": "edit_region", "arguments": {
        "action": "replace", "target": "cat", "qualifier": "leftmost", "new_value": "fox"}}],
    "rends le chat de gauche rouge": [{"name": "edit_region", "arguments": {
        "action": "attribute", "target": "cat", "qualifier": "leftmost", "new_value": "red"}}],
    "make the car red, then show me the mask": [
        {"name": "edit_region", "arguments": {"action": "attribute", "target": "car", "new_value": "red"}},
        {"name": "show_mask", "arguments": {}}],
}
"""What the scripted model answers to each last user message (anything else: a chat reply)."""

ERRORS = {
    "vllm": (400, "application/json", json.dumps({
        "object": "error", "message": '"auto" tool choice requires --enable-auto-tool-choice and '
        "--tool-call-parser to be set", "type": "BadRequestError", "param": None, "code": 400})),
    "ollama": (400, "text/plain; charset=utf-8", "registry.ollama.ai/library/smollm2:135m does not support tools"),
    "llamacpp": (500, "application/json", json.dumps({
        "error": {"code": 500, "message": "tools param requires --jinja flag", "type": "server_error"}})),
}


class ScriptedServer:
    """An OpenAI-compatible ``POST /v1/chat/completions`` on 127.0.0.1 (see the module docstring)."""

    def __init__(self, mode: str):
        self.mode, self.requests, self.stop = mode, [], threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep the test output quiet
                return

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                server.requests.append(body)
                server.answer(self, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_port}/v1"

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- the answers ----------------------------------------------------------------------------

    def answer(self, handler: BaseHTTPRequestHandler, body: dict) -> None:
        tools = bool(body.get("tools"))
        if self.mode == "hang":
            self.stop.wait(120)
            return
        if self.mode == "garbage":
            self._garbage(handler)
            return
        if tools and self.mode in ERRORS:
            status, kind, text = ERRORS[self.mode]
            self._send(handler, status, kind, text.encode())
            return
        said = next((m.get("content") for m in reversed(body.get("messages") or []) if m.get("role") == "user"), "")
        if isinstance(said, list):  # a message with the photo (agent.language.vision): its own text comes first
            said = next((p.get("text") for p in said if p.get("type") == "text"), "")
        calls = PLANS.get(str(said).strip().lower(), [{"name": "reply", "arguments": {"text": "Hello!"}}])
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if tools:  # native tool calls
            message["tool_calls"] = [{"id": f"call_{i}", "type": "function", "function": {
                "name": c["name"], "arguments": json.dumps(c["arguments"])}} for i, c in enumerate(calls)]
        else:  # what a small model writes: prose around JSON
            message["content"] = "Sure, here is the call:\n" + json.dumps(calls if len(calls) > 1 else calls[0])
        reply = {"id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()),
                 "model": body.get("model"), "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                 "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}}
        self._send(handler, 200, "application/json", json.dumps(reply).encode())

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, kind: str, data: bytes) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _garbage(self, handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        rng = random.Random(0)
        try:
            while not self.stop.is_set():
                chunk = bytes(rng.randrange(256) for _ in range(4096)) + b"\x1b[2J{\"choices\": ["
                handler.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        except (BrokenPipeError, ConnectionResetError, OSError):
            return


@pytest.fixture
def serve():
    servers: list[ScriptedServer] = []

    def start(mode: str) -> ScriptedServer:
        servers.append(ScriptedServer(mode))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def understander_for(server: ScriptedServer, budget: float = 6.0, timeout: float = 30.0) -> Understander:
    settings = Settings(llm_model="scripted-model", llm_base_url=server.base_url, llm_timeout=timeout,
                        llm_turn_budget=budget, llm_retries=1, _env_file=None)
    return Understander(make_llm(settings), settings=settings)


CONTEXT = ParseContext(caption="a cat sitting next to a car on a sofa")


def timed(understander: Understander, text: str, context: Optional[ParseContext] = None):
    t0 = time.monotonic()
    out = understander.understand(text, context or CONTEXT)
    return out, time.monotonic() - t0


def assert_fox(plan: Any) -> None:
    assert isinstance(plan, EditPlan), plan
    assert (plan.action, plan.target, plan.new_value) == ("replace", "cat", "fox")


# --- servers that call tools, and ones that reject them ------------------------------------------


def test_a_server_with_tool_calling_gets_tools(serve):
    server = serve("tools")
    out, took = timed(understander_for(server), "turn the cat into a fox")
    assert out.path == "llm-tool" and out.note == "", out.note
    assert_fox(out.result)
    assert out.result.target_caption == "a fox on a sofa"  # the model's caption pair, kept
    (request,) = server.requests
    assert {t["function"]["name"] for t in request["tools"]} >= {"edit_region", "reply", "undo"}
    assert request["max_completion_tokens"] == 200 and request["max_tokens"] == 200  # Ollama reads only the latter


@pytest.mark.parametrize("mode, status", [("vllm", 400), ("ollama", 400), ("llamacpp", 500)])
def test_a_server_that_rejects_tools_is_asked_for_json_and_remembered(serve, mode, status):
    server = serve(mode)
    understander = understander_for(server)
    out, took = timed(understander, "turn the cat into a fox")
    assert out.path == "llm-json", out.note  # the LLM path, not the parser's fallback
    assert_fox(out.result)
    assert f"does not accept tool definitions (HTTP {status}" in out.note and took < 6.0
    assert [bool(r.get("tools")) for r in server.requests] == [True, False]  # resent once, without tools
    # the next turn, and a new understander in the same process, go straight to JSON and say nothing more
    out, _ = timed(understander, "make the car red")
    assert out.path == "llm-json" and out.note == "" and out.result.target == "car"
    out, _ = timed(understander_for(server), "turn the cat into a fox")
    assert out.path == "llm-json" and out.note == ""
    assert [bool(r.get("tools")) for r in server.requests] == [True, False, False, False]
    assert all(r["max_tokens"] == 200 and r["max_completion_tokens"] == 200 for r in server.requests)


def test_a_server_that_streams_garbage_ends_in_the_parsers_plan_within_the_budget(serve):
    server = serve("garbage")
    out, took = timed(understander_for(server, budget=6.0), "turn the cat into a fox")
    assert out.path == "offline-fallback" and "language model request failed" in out.note, out.note
    assert_fox(out.result)
    assert took < 6.0 and len(server.requests) == 1  # cut at the size limit, not retried


def test_a_hung_server_ends_in_the_parsers_plan_within_the_budget_and_commands_do_not_wait(serve):
    server = serve("hang")
    understander = understander_for(server, budget=2.5, timeout=30.0)
    out, took = timed(understander, "turn the cat into a fox")
    assert out.path == "offline-fallback" and "within the turn's 2.5 s" in out.note, out.note
    assert_fox(out.result)
    assert 2.0 <= took < 4.0
    assert len(server.requests) == 1  # a timed-out request to a local server is never retried
    out, took = timed(understander, "undo")
    assert out.path == "parser-fast" and out.result == Command(name="undo") and took < 0.5
    assert len(server.requests) == 1


def test_a_reply_to_a_clear_edit_is_replaced_by_the_parser(serve):
    server = serve("vllm")
    out, _ = timed(understander_for(server), "Remove the horse", ParseContext(caption="a horse in a field"))
    assert out.path == "parser-check" and "chat reply to a clear edit" in out.note
    assert isinstance(out.result, EditPlan) and (out.result.action, out.result.target) == ("remove", "horse")


def test_french_becomes_an_english_plan_through_a_real_server(serve):
    server = serve("ollama")
    out, _ = timed(understander_for(server), "transforme le chat en renard")
    assert out.path == "llm-json"
    assert_fox(out.result)
    assert out.result.instruction == "turn the cat into a fox"
    system = server.requests[-1]["messages"][0]["content"]
    assert "always write target" in system and "in English" in system


def test_an_edit_plus_a_command_in_one_answer(serve):
    for mode in ("tools", "llamacpp"):
        server = serve(mode)
        out, _ = timed(understander_for(server), "make the car red, then show me the mask")
        assert out.path in ("llm-tool", "llm-json") and out.result.target == "car"
        assert out.rest == (Command(name="show_mask"),) and "also asked for show mask" in out.note


def test_a_dotenv_with_openai_variables_turns_the_llm_on(serve, tmp_path, monkeypatch):
    """OPENAI_BASE_URL / OPENAI_API_KEY in .env are read like every setting (they were ignored)."""
    server = serve("tools")
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LOCALEDIT_LLM_API_KEY", "LOCALEDIT_LLM_BASE_URL",
                 "LOCALEDIT_LLM_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"OPENAI_BASE_URL={server.base_url}\nOPENAI_API_KEY=sk-local-abcdefghij\n"
                                   "LOCALEDIT_LLM_MODEL=scripted-model\n")
    settings = Settings()
    out = Understander(make_llm(settings), settings=settings).understand("turn the cat into a fox", CONTEXT)
    assert out.path == "llm-tool" and len(server.requests) == 1
    assert os.environ.get("OPENAI_API_KEY") is None


# --- a conversation, the way a user meets it -----------------------------------------------------


def test_a_conversation_through_a_server_without_tool_parsing(serve, settings, registry, photo_path, tmp_path):
    """Python ``Session`` over the real graph (tiny models): the edit goes through the LLM path and the reply
    says once that the server takes no tools; undo never reaches the server; French edits too."""
    from agent.runtime.session import Conversations
    from tests.helpers.scenes import SceneWorker, agent_settings

    server = serve("vllm")
    s = agent_settings(settings, tmp_path).model_copy(update={
        "llm_model": "scripted-model", "llm_base_url": server.base_url, "llm_turn_budget": 20.0})
    conversations = Conversations(s, worker=SceneWorker(s, registry=registry),
                                  understander=Understander(make_llm(s), settings=s))
    try:
        chat = conversations.session()
        chat.send("", image=photo_path)
        reply = chat.send("turn the leftmost cat into a fox")
        assert not reply.error and not reply.question, reply.text
        assert reply.understood["path"] == "llm-json" and len(chat.versions()) == 2
        # a diagnostic: in this turn's step details (the report), never in the reply (issue 19)
        assert "does not accept tool definitions" not in reply.text
        assert "does not accept tool definitions" in reply.report["skipped"]["understood"]
        asked = len(server.requests)
        assert "Undid 1 step" in chat.send("undo").text and len(server.requests) == asked
        reply = chat.send("rends le chat de gauche rouge")
        assert not reply.error and reply.understood["path"] == "llm-json", reply.text
        plan = reply.understood["result"]
        assert (plan["instruction"], plan["qualifier"]) == ("make the cat red", "leftmost")  # English for ip2p
        assert "tool definitions" not in reply.text and reply.images.get("edited")
    finally:
        conversations.close()


def test_the_benchmark_scores_the_llm_path_against_the_parser(serve, tmp_path):
    from bench.llm import main, report, run
    from bench.phrasings import PHRASINGS, P

    server = serve("tools")
    cases = [P("turn the cat into a fox", "replace", "cat", scene="room"), P("Remove the horse", "remove", "horse"),
             P("undo", "command"), P("transforme le chat en renard", "replace", "cat", scene="room")]
    rows = run(understander_for(server), cases)
    assert [r["path"] for r in rows] == ["llm-tool", "parser-check", "parser-fast", "llm-tool"]
    assert all(r["final_target"] and r["final_action"] for r in rows)
    assert [r["parser_target"] for r in rows] == [True, True, True, False]  # the parser reads no French
    assert rows[1]["llm"] == "chat" and not rows[1]["llm_action"] and not rows[1]["chat_for_edit"]
    text = report(rows, "scripted")
    assert "| parser-check | 1 | 25.0 % |" in text and "| parser alone | 75.0 % | 75.0 % |" in text
    assert "Clear edits answered with chat: 0." in text
    assert len(PHRASINGS) >= 100
    (tmp_path / "rows.json").write_text(__import__("json").dumps(rows))
    assert main(["--report", str(tmp_path / "rows.json")]) == 0
