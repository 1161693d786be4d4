"""The planner sees the photo (``agent.language.vision``): scripted OpenAI-compatible servers on 127.0.0.1 that behave
like the real ones, driven by the real ``ChatOpenAI`` that ``make_llm`` builds.

===============  ===============================================================================
server           a request that carries an ``image_url`` part gets
===============  ===============================================================================
``qwen2.5-vl``   an ``edit_region`` call with ``bbox_2d`` in pixels of the image as sent
``qwen3-vl``     the same box on the 0-1000 grid
``vllm``         400 ``{"object": "error", "message": "<model> is not a multimodal model None", ...}``
``llamacpp``     500 ``image input is not supported - hint: ... you may need to provide the mmproj``
``ollama``       500 ``vision model not found`` (a text model)
===============  ===============================================================================

Without images every server answers the plan without a box (the caption path).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agent.language import refusals, vision
from agent.language.llm import Understander
from agent.language.llm_client import make_llm
from agent.language.parser import ParseContext
from agent.runtime.session import Conversations
from tests.conftest import free_port, scene
from tests.helpers.scenes import CATS, SIZE, SceneWorker, agent_settings
from tools.config import Settings
from tools.types import Detection

pytestmark = pytest.mark.server
REFUSALS = {
    "vllm": (400, {"object": "error", "message": "Qwen/Qwen3-8B is not a multimodal model None",
                   "type": "BadRequestError", "param": None, "code": 400}),
    "llamacpp": (500, {"error": {"code": 500, "message": "image input is not supported - hint: if this is "
                                 "unexpected, you may need to provide the mmproj", "type": "server_error"}}),
    "ollama": (500, {"error": {"message": "vision model not found", "type": "api_error", "param": None,
                               "code": None}}),
}
MODELS = {"qwen2.5-vl": "Qwen/Qwen2.5-VL-7B-Instruct", "qwen3-vl": "Qwen/Qwen3-VL-8B-Instruct",
          "vllm": "Qwen/Qwen3-8B", "llamacpp": "qwen3-8b", "ollama": "llama3.1:8b"}
SIDE = 80  # the photo goes out at this long side: the pixel box must be scaled back


def image_parts(body: dict) -> list[dict]:
    return [p for m in body["messages"] if isinstance(m.get("content"), list) for p in m["content"]
            if p.get("type") == "image_url"]


class VisionServer:
    """``POST /v1/chat/completions`` answering ``make the cat red`` with an ``edit_region`` call."""

    def __init__(self, mode: str):
        self.mode, self.requests = mode, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                outer.requests.append(body)
                status, answer = outer.answer(body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_port}/v1"

    def answer(self, body: dict) -> tuple[int, dict]:
        parts = image_parts(body)
        if parts and self.mode in REFUSALS:
            return REFUSALS[self.mode]
        said = json.dumps(body["messages"][-1]["content"])
        args = {"action": "attribute", "target": "cat", "new_value": "blue" if "blue" in said else "red"}
        if parts:  # it sees the middle cat; Qwen2.5-VL in pixels of the image it got, Qwen3-VL on 0-1000
            x0, y0, x1, y1 = CATS[1]
            scale = (SIDE / max(SIZE), SIDE / max(SIZE)) if self.mode == "qwen2.5-vl" else \
                (1000 / SIZE[0], 1000 / SIZE[1])
            args["bbox_2d"] = [round(x0 * scale[0]), round(y0 * scale[1]), round(x1 * scale[0]), round(y1 * scale[1])]
        call = {"id": "call_0", "type": "function", "function": {"name": "edit_region", "arguments": json.dumps(args)}}
        return 200, {"id": "c", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
                     "choices": [{"index": 0, "finish_reason": "tool_calls",
                                  "message": {"role": "assistant", "content": None, "tool_calls": [call]}}]}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def vision_server(request):
    refusals.forget()
    s = VisionServer(request.param)
    yield s
    s.close()
    refusals.forget()


def llm_settings(server: VisionServer, **more) -> dict:
    return dict(llm_model=MODELS[server.mode], llm_base_url=server.base_url, llm_image_side=SIDE, llm_retries=0,
                llm_turn_budget=30, **more)


@pytest.mark.parametrize("vision_server", ["qwen2.5-vl", "qwen3-vl"], indirect=True)
def test_a_vision_server_sees_the_photo_and_its_box_picks_the_cat(vision_server, settings, tmp_path):
    s = agent_settings(settings, tmp_path, **llm_settings(vision_server))
    conv = Conversations(s, worker=SceneWorker(s, objects={"cat": list(CATS)}),
                         understander=Understander(make_llm(s), settings=s))
    chat = conv.session()
    chat.send("", image=scene(SIZE, boxes=CATS))
    reply = chat.send("make the cat red")  # three cats: without the box, "which cat?"
    record = chat.record()
    conv.close()
    (part,) = image_parts(vision_server.requests[-1])
    assert part["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert not reply.question and "edited" in reply.images, reply.text
    assert record["boxes"] == [list(map(float, CATS[1]))]  # the edit's region is the box's cat
    ground = next(e for e in reply.report["stages"] if e["stage"] == "ground")
    assert "language model's box" in ground["hint"]


@pytest.mark.parametrize("vision_server", list(REFUSALS), indirect=True)
def test_a_server_that_refuses_images_still_plans_from_the_caption_and_is_remembered(vision_server, tmp_path):
    s = Settings(_env_file=None, **llm_settings(vision_server))
    photo = tmp_path / "cats.png"
    scene(SIZE, boxes=CATS).save(photo)
    understander = Understander(make_llm(s), settings=s)
    context = ParseContext(caption="three cats on a lawn", photo=str(photo))
    first = understander.understand("make the cat red", context)
    assert first.path == "llm-tool" and first.result.target == "cat" and first.result.box is None
    assert "does not accept images" in first.note
    assert [bool(image_parts(r)) for r in vision_server.requests] == [True, False]  # asked again without the photo
    second = understander.understand("make the cat blue", context)
    assert second.path == "llm-tool" and "images" not in second.note
    assert [bool(image_parts(r)) for r in vision_server.requests] == [True, False, False]  # remembered


@pytest.mark.parametrize("vision_server", ["qwen3-vl"], indirect=True)
def test_vision_off_sends_no_photo(vision_server, tmp_path):
    s = Settings(_env_file=None, **llm_settings(vision_server, llm_vision="off"))
    photo = tmp_path / "cats.png"
    scene(SIZE, boxes=CATS).save(photo)
    out = Understander(make_llm(s), settings=s).understand("make the cat red", ParseContext(photo=str(photo)))
    assert out.result.target == "cat" and out.result.box is None and not image_parts(vision_server.requests[0])


def test_boxes_map_onto_the_photo_and_hint_the_detections():
    assert vision.box_format("Qwen/Qwen2.5-VL-7B-Instruct") == "pixels"
    assert vision.box_format("qwen2.5vl:7b") == "pixels"
    assert vision.box_format("Qwen/Qwen3-VL-8B-Instruct") == "grid1000"
    assert vision.box_format("qwen2.5vl:7b", "grid1000") == "grid1000"
    assert vision.to_pixels([10, 20, 30, 40], "pixels", (80, 60), (160, 120)) == (20, 40, 60, 80)
    assert vision.to_pixels([500, 500, 1000, 1000], "grid1000", (80, 60), (160, 120)) == (80, 60, 160, 120)
    assert vision.to_pixels([5, 5, 5, 5], "pixels", (80, 60), (160, 120)) is None  # empty
    cats = [Detection("cat", 0.5, tuple(map(float, b))) for b in CATS]
    picked, _ = vision.hint_detections(cats, tuple(map(float, CATS[2])), "cat", decides=True)
    assert picked == [cats[2]]
    kept, why = vision.hint_detections(cats, tuple(map(float, CATS[2])), "cat", decides=False)
    assert kept == cats and "selection rules" in why  # "the leftmost cat": the rules decide
    kept, _ = vision.hint_detections(cats, (0.0, 0.0, 3.0, 3.0), "cat", decides=True)
    assert kept == cats  # the box overlaps nothing: the rules decide
    alone, _ = vision.hint_detections([], (1.0, 2.0, 30.0, 40.0), "cat", decides=True)
    assert alone == [Detection("cat", 1.0, (1.0, 2.0, 30.0, 40.0))]
