"""The HTTP worker (``python -m tools.worker``) in a subprocess on a loopback port, with the tiny models.

The agent talks to it through :class:`tools.worker.client.RemoteWorker` exactly as it talks to the in-process
worker. As in ``test_agent``, only grounding is fixed on the client side (the tiny GroundingDINO's boxes
are noise): ``SceneRemoteWorker`` still sends every /ground request, then answers with the scene's boxes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Optional

import httpx
import numpy as np
import pytest
from PIL import Image

from agent.language.llm import Understander
from agent.runtime.session import Conversations
from tests.conftest import free_port, scene
from tests.helpers import wait_until
from tests.helpers.worker import REPO, TOKEN, SceneRemoteWorker, no_tracebacks
from tests.helpers.scenes import CATS, SIZE, agent_settings, edited_region, inside, pixels
from tools.types import LocaleditError, WorkerUnavailableError
from tools.worker.client import RemoteWorker
from tools.worker.wire import encode_image

@pytest.fixture
def remote(worker_process):
    worker = SceneRemoteWorker(worker_process.url, token=TOKEN, timeout=60)
    yield worker
    worker.close()


@pytest.fixture
def remote_conversations(settings, remote, tmp_path):
    """Conversations whose worker is the HTTP worker process (through ``remote``)."""
    conv = Conversations(agent_settings(settings, tmp_path), worker=remote, understander=Understander(None))
    yield conv
    conv.close()


def cache_counts(status: dict) -> dict[str, tuple[int, int]]:
    """``{cache: (hits, misses)}`` from /status."""
    return {name: (stats["hits"], stats["misses"]) for name, stats in status["caches"].items()}


def test_agent_turn_through_the_http_worker_then_cache_hits(worker_process, remote_conversations, photo_path):
    chat = remote_conversations.session()
    chat.send("", image=photo_path)
    original = pixels(chat.current_image_path())
    reply = chat.send("turn the leftmost cat into a fox")
    assert not reply.error and not reply.question, reply.text
    assert len(chat.versions()) == 2
    region = edited_region(chat)
    after = pixels(chat.current_image_path())
    assert region.any() and inside(region, CATS[0])
    assert np.array_equal(after[~region], original[~region])  # outside the region: bit-identical
    status = worker_process.status()
    assert status["kind"] == "http" and status["ready"]
    assert {"/caption", "/ground", "/segment", "/edit", "/score"} <= set(status["requests"])

    before = cache_counts(status)
    again = remote_conversations.session()  # a second turn on the same image
    again.send("", image=photo_path)
    second = again.send("turn the leftmost cat into a fox")
    assert not second.error, second.text
    after = cache_counts(worker_process.status())
    # neither BLIP-2 nor the SAM image encoder ran again: no new misses (SAM may even keep the image
    # set in its predictor, a hit that does not go through the LRU); caption and CLIP hit the LRU
    assert after["caption"][1] == before["caption"][1] and after["sam"][1] == before["sam"][1], (before, after)
    assert after["caption"][0] > before["caption"][0] and after["clip"][0] > before["clip"][0], (before, after)
    assert second.scores["cache_hits"] >= 1  # the turn's own report says the CLIP embedding hit


def test_token_refused_and_accepted(worker_process):
    image = encode_image(scene())
    assert httpx.post(f"{worker_process.url}/caption", json={"image": image}).status_code == 401
    wrong = httpx.post(f"{worker_process.url}/caption", json={"image": image}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "token" in wrong.json()["detail"]
    assert httpx.get(f"{worker_process.url}/status").status_code == 401
    assert httpx.get(f"{worker_process.url}/health").status_code == 200  # probes need no token
    with pytest.raises(LocaleditError, match="token"):
        RemoteWorker(worker_process.url, token="wrong").caption(scene())
    ok = RemoteWorker(worker_process.url, token=TOKEN)
    assert ok.caption(scene()).text and ok.ready()
    assert ok.status()["kind"] == "remote"  # the client says where it talks to
    ok.close()


def test_oversize_and_malformed_requests_are_refused_and_the_worker_keeps_serving(worker_process, remote):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    big = httpx.post(f"{worker_process.url}/caption", content=b"x" * 3_000_000,
                     headers={**auth, "Content-Type": "application/json"})
    assert big.status_code == 413 and "limit" in big.json()["detail"]
    noise = np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8)
    with pytest.raises(LocaleditError, match="limit"):  # 413 through the client: a reason, not a crash
        remote.caption(Image.fromarray(noise))
    image = encode_image(scene())
    cases = [
        ("/caption", b"{not json", 400),
        ("/caption", b"[1, 2]", 400),
        ("/caption", b'{"image": "%%%"}', 400),
        ("/caption", b'{"image": "aGVsbG8="}', 400),  # base64 of "hello": not an image
        ("/caption", b'{"picture": "x"}', 422),
        ("/segment", b'{"image": "%s", "boxes": [[1, 2]]}' % image.encode(), 422),
        ("/ground", b'{"image": "%s", "phrase": ""}' % image.encode(), 422),
        ("/edit", b'{"image": "%s", "request": {"editor": "nope"}}' % image.encode(), 400),
        ("/edit", b'{"image": "%s", "request": {"editor": "ip2p-composite"}}' % image.encode(), 400),  # no mask
    ]
    for path, body, status in cases:
        answer = httpx.post(worker_process.url + path, content=body, headers={**auth, "Content-Type": "application/json"})
        assert answer.status_code == status, (path, body[:40], answer.text)
        assert answer.json()["detail"].endswith("."), answer.json()
    assert httpx.get(f"{worker_process.url}/health").json()["ok"]
    assert remote.caption(scene()).text  # still serving
    assert worker_process.proc.poll() is None


@pytest.mark.server
def test_refuses_to_listen_beyond_loopback_without_a_token(tiny_models_dir):
    env = {k: v for k, v in os.environ.items() if k != "LOCALEDIT_WORKER_TOKEN"}
    out = subprocess.run([sys.executable, "-m", "tools.worker", "--host", "0.0.0.0", "--port", str(free_port()),
                          "--models", str(tiny_models_dir)], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "without a token" in out.stderr


def test_worker_killed_mid_turn_then_restarted(worker_process, remote_conversations, photo_path):
    chat = remote_conversations.session()
    chat.send("", image=photo_path)
    first = chat.current_image_path()
    original = pixels(first)

    def kill_on_first_step(event: dict) -> None:
        if event.get("stage") == "edit":
            worker_process.kill()

    reply = chat.send("make the leftmost cat red", progress=kill_on_first_step)
    assert worker_process.proc.poll() is not None, "the worker was killed during the turn"
    assert reply.error and "not reachable" in reply.text and "\n" not in reply.text
    assert len(chat.versions()) == 1 and chat.current_image_path() == first
    assert np.array_equal(pixels(first), original)  # the conversation's image is intact

    with pytest.raises(WorkerUnavailableError, match="not reachable"):
        remote_conversations.worker.caption(scene())

    worker_process.start()  # the same port
    after = chat.send("make the leftmost cat red")
    assert not after.error, after.text
    assert len(chat.versions()) == 2 and inside(edited_region(chat), CATS[0])


def test_speed_settings_apply_when_asked_and_keep_the_background(settings, tiny_models_dir):
    """The GPU speed knobs (few-step scheduler, TAESD decoding, explicit SDPA) load and edit on the CPU too."""
    from tools.images import box_to_mask
    from tools.types import EditRequest
    from tools.worker import LocalWorker

    fast = settings.model_copy(update={"ip2p_scheduler": "dpm++", "preview_vae": True, "attention": "sdpa"})
    worker = LocalWorker(fast)
    photo, mask = scene(SIZE, boxes=CATS), box_to_mask(CATS[0], SIZE)
    result = worker.edit(photo, mask, EditRequest("ip2p-composite", "make it red"))
    assert result.info["scheduler"] == "DPMSolverMultistepScheduler"
    assert "taesd" in worker.registry.loaded()
    before, after = np.asarray(photo), np.asarray(result.image)
    assert np.array_equal(after[~result.region], before[~result.region])
    assert not np.array_equal(after, before)


@pytest.mark.parametrize("how", ["stop", "given up"])
def test_a_cancelled_remote_edit_stops_on_the_server(worker_process, remote, how):
    """Stop on the client (``how`` "stop"), or the turn giving the call up (its limit passed: the call's
    abandon flag, no cancel argument), closes the stream; the server stops the edit at its next step, so
    the model is free at once (a 1000-step edit left running would hold it for a long while)."""
    import contextlib
    import threading

    from tools.images import box_to_mask
    from tools.stopping import abandon_flag
    from tools.types import Cancelled, EditRequest

    photo = scene(SIZE, boxes=CATS)
    flag, steps = threading.Event(), []
    before = worker_process.status()["failures"].get("cancelled", 0)

    def progress(step: int, total: int) -> None:
        steps.append(step)
        if step >= 2:
            flag.set()

    started = time.monotonic()
    given_up = abandon_flag(flag) if how == "given up" else contextlib.nullcontext()
    with given_up, pytest.raises(Cancelled):
        remote.edit(photo, box_to_mask(CATS[0], SIZE), EditRequest("ip2p-composite", "make it red", steps=1000),
                    progress=progress, cancel=flag if how == "stop" else None)
    assert 2 <= max(steps) < 50, steps
    assert remote.caption(photo).text  # the model lock is free again
    assert time.monotonic() - started < 30
    wait_until(lambda: worker_process.status()["failures"].get("cancelled", 0) > before, "the server counted the stop")
    assert worker_process.status()["failures"].get("cancelled", 0) == before + 1  # the server stopped it, not finished it
    assert worker_process.proc.poll() is None


def test_score_over_http_carries_the_evaluation_region_and_categories(remote, settings, registry):
    """``/score`` takes the region's boxes, the object mask and CLIP-RC's two categories, and answers what
    the in-process worker answers."""
    from tools.worker import LocalWorker

    image = scene(SIZE, boxes=CATS)
    edited = scene(SIZE, boxes=[(12, 42, 52, 92), *CATS[1:]])
    mask = np.zeros(SIZE[::-1], bool)
    mask[45:85, 15:45] = True
    kwargs = dict(mask=mask, boxes=[CATS[0], CATS[2]], source_caption="a photo of a cat",
                  target_caption="a photo of a fox", target_text="fox", source_text="cat")
    here = LocalWorker(settings, registry=registry).score(image, edited, **kwargs)
    there = remote.score(image, edited, **kwargs)
    assert here.clip_rc is not None and here.clip_rc_source is not None and here.clip_gc < 100.0
    for name in ("clip_rc", "clip_rc_source", "clip_gc", "clip_i", "l1_outside"):
        assert getattr(there, name) == pytest.approx(getattr(here, name), abs=1e-3), name
    one_box = remote.score(image, edited, mask=mask, boxes=[CATS[0]], target_text="fox", source_text="cat")
    assert one_box.clip_rc != pytest.approx(there.clip_rc, abs=1e-6)  # the second box did travel


# --------------------------------------------------------------------------- hostile requests


def post(worker_process, path: str, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(worker_process.url + path, content=body, timeout=60,
                      headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json", **headers})


def raw_request(port: int, path: str, body: bytes, *, declared: Optional[int] = None) -> "socket.socket":
    """An HTTP request on a plain socket whose body may stop short of its Content-Length."""
    import socket

    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {declared if declared is not None else len(body)}"
            f"\r\n\r\n").encode()
    sock.sendall(head + body)
    return sock


def read_reply(sock) -> str:
    """The whole HTTP answer on ``sock`` (headers and a Content-Length body)."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int(
            next((line.split(b":")[1] for line in data.split(b"\r\n") if line.lower().startswith(b"content-length")),
                 b"0")):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


def flat_png(size, mode="RGB") -> str:
    import base64
    import io

    buf = io.BytesIO()
    Image.new(mode, size, 1 if mode == "1" else (120, 130, 140)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_malformed_values_get_4xx_with_a_reason_never_500(worker_process):
    """Finding 5: NaN, Infinity, deep JSON, out-of-range knobs and a tiny inpaint strength."""
    image = encode_image(scene(SIZE, boxes=CATS))
    from tools.worker.wire import encode_mask
    from tools.images import box_to_mask

    mask = encode_mask(box_to_mask(CATS[0], SIZE))

    def edit(**request) -> bytes:
        return json.dumps({"image": image, "mask": mask, "request": {"instruction": "make it red", **request}}).encode()

    deep = b'{"image": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    cases = [
        ("/edit", edit(editor="ip2p").replace(b'"instruction"', b'"guidance_scale": NaN, "instruction"'), 400, "NaN"),
        ("/edit", edit(editor="ip2p").replace(b'"instruction"', b'"seed": Infinity, "instruction"'), 400, "Infinity"),
        ("/ground", b'{"image": "%s", "phrase": "cat", "box_threshold": -Infinity}' % image.encode(), 400, "Infinity"),
        ("/caption", deep, 400, "nested too deeply"),
        ("/caption", b'{"image": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": {"k": {"l": {"m": '
                     b'{"n": {"o": {"p": {"q": 1}}}}}}}}}}}}}}}}}}', 400, "nested too deeply"),
        ("/edit", edit(editor="inpaint", strength=1e-9), 400, "runs no denoising step"),
        ("/edit", edit(editor="ip2p", guidance_scale=1e300), 400, "guidance scale"),
        ("/edit", edit(editor="ip2p", image_guidance_scale=-1), 400, "image guidance scale"),
        ("/edit", edit(editor="ip2p", steps=0), 400, "steps"),
        ("/edit", edit(editor="ip2p", steps=10**12), 400, "steps"),
        ("/edit", edit(editor="ip2p", seed=-5), 400, "seed"),
        ("/edit", edit(editor="ip2p", max_side=10), 400, "long side"),
        ("/edit", edit(editor="ip2p", strength=2.5), 400, "strength"),
        ("/edit", edit(editor="ip2p", steps=2.5), 422, "steps"),
        ("/edit", edit(editor="ip2p", instruction="x" * 5000), 400, "longer than"),
        ("/segment", b'{"image": "%s", "boxes": [[50, 50, 10, 10]]}' % image.encode(), 422, "empty"),
        ("/segment", b'{"image": "%s", "boxes": [[5000, 5000, 6000, 6000]]}' % image.encode(), 422, "outside"),
        ("/score", b'{"original": "%s", "edited": "%s", "box": [1e308, 0, -1e308, 5]}'
                   % (image.encode(), image.encode()), 422, "empty"),
        ("/ground", b'{"image": "%s", "phrase": "cat", "text_threshold": 7}' % image.encode(), 422, "text_threshold"),
    ]
    for path, body, status, words in cases:
        answer = post(worker_process, path, body)
        assert answer.status_code == status, (path, words, answer.text)
        detail = answer.json()["detail"]
        assert words in detail and detail.endswith(".") and "\n" not in detail, (words, detail)
    assert "500" not in worker_process.status()["failures"]
    no_tracebacks(worker_process)
    assert httpx.get(f"{worker_process.url}/health").json()["ok"] and worker_process.proc.poll() is None


def test_a_small_request_that_would_cost_gigabytes_is_refused_before_decoding(worker_process, remote):
    """Finding 3: a 230 KB body (a flat 7999x7999 PNG and its mask) once raised the worker by 4.4 GB."""
    before = worker_process.memory()
    body = json.dumps({"image": flat_png((7999, 7999)), "mask": flat_png((7999, 7999), "1"),
                       "request": {"editor": "ip2p-composite", "instruction": "make it red"}}).encode()
    assert len(body) < 400_000
    answer = post(worker_process, "/edit", body)
    assert answer.status_code == 413, answer.text
    detail = answer.json()["detail"]
    assert "7999x7999" in detail and "memory" in detail and "LOCALEDIT_MAX_REQUEST_MEMORY" in detail
    after = worker_process.memory()
    assert after["VmHWM"] - before["VmHWM"] < 64 << 20, (before, after)  # nothing was decoded
    strip = post(worker_process, "/caption", json.dumps({"image": flat_png((8000, 2))}).encode())
    assert strip.status_code == 400 and "times longer" in strip.json()["detail"]  # CLIP never sees it
    big_enough = post(worker_process, "/caption", json.dumps({"image": flat_png((1200, 900))}).encode())
    assert big_enough.status_code == 200, big_enough.text  # under the estimate limit: served
    assert remote.caption(scene()).text


def test_a_stalled_or_aborted_upload_is_dropped_quietly(worker_process, remote):
    """Finding 5: a stalled upload once held a worker past 75 s; an aborted one logged 69 lines."""
    started = time.monotonic()
    stalled = raw_request(worker_process.port, "/caption", b'{"image": "', declared=200_000)  # and then nothing
    reply = read_reply(stalled)
    stalled.close()
    assert reply.startswith("HTTP/1.1 408") and "upload limit" in reply, reply
    assert time.monotonic() - started < 10
    dropped = worker_process.status()["failures"].get("499", 0)
    for _ in range(3):
        aborted = raw_request(worker_process.port, "/edit", b'{"image": "' + b"A" * 50_000, declared=250_000)
        aborted.close()  # the client gives up half way
    wait_until(lambda: worker_process.status()["failures"].get("499", 0) == dropped + 3,
               "the worker dropped the three aborted uploads (499: the client went away)")
    assert remote.caption(scene()).text  # still serving
    no_tracebacks(worker_process)


def test_work_abandoned_while_it_waited_for_the_model_never_runs(worker_process, remote):
    """A caption queued behind a long edit, whose client went away, is dropped instead of run."""
    import threading

    from tools.images import box_to_mask
    from tools.types import Cancelled, EditRequest

    photo = scene(SIZE, boxes=CATS)
    flag, started = threading.Event(), threading.Event()

    def long_edit():
        with pytest.raises(Cancelled):
            remote.edit(photo, box_to_mask(CATS[0], SIZE), EditRequest("ip2p-composite", "red", steps=1000),
                        progress=lambda step, total: started.set(), cancel=flag)

    editing = threading.Thread(target=long_edit)
    editing.start()
    assert started.wait(30)
    before = worker_process.status()["failures"].get("abandoned", 0)
    gone = worker_process.status()["failures"].get("499", 0)
    queued = raw_request(worker_process.port, "/caption", json.dumps({"image": encode_image(photo)}).encode())
    wait_until(lambda: worker_process.status()["waiting_for_model"] == 1, "the caption waits for the model")
    queued.close()  # the client goes away
    wait_until(lambda: worker_process.status()["failures"].get("499", 0) == gone + 1,
               "the worker saw the caption's client go away")
    flag.set()  # the edit stops, the model is free: the abandoned caption must not run now
    editing.join(60)
    wait_until(lambda: worker_process.status()["failures"].get("abandoned", 0) == before + 1,
               "the abandoned caption was dropped")
    assert worker_process.status()["failures"].get("abandoned", 0) == before + 1
    assert remote.caption(photo).text


def test_the_same_turn_in_process_and_remote_gives_the_same_report(worker_process, remote, settings, registry, tmp_path,
                                                                     photo_path):
    """Finding 6: with a remote worker the chat's settings were dropped (asked 3 steps, it ran 200).

    The UI's panel values live in the agent's settings; every knob (editor, steps, long side,
    guidance, image guidance, seed) must travel in the request, so the worker's own defaults
    (2 steps, long side 64 here) change nothing."""
    from tests.helpers.scenes import SceneWorker

    panel = dict(steps=3, max_side=96, guidance_scale=5.0, image_guidance_scale=1.2, seed=7, editor="ip2p-composite",
                 auto_retry=False)

    def turn(worker, where: str, knobs: dict = panel):
        conv = Conversations(agent_settings(settings, tmp_path / where, **knobs), worker=worker,
                             understander=Understander(None))
        chat = conv.session()
        chat.send("", image=photo_path)
        steps: list[int] = []
        reply = chat.send("turn the leftmost cat into a fox",
                          progress=lambda e: steps.append(e["total"]) if "total" in e else None)
        assert not reply.error, reply.text
        return reply, pixels(chat.current_image_path()), edited_region(chat), max(steps), conv

    local = SceneWorker(agent_settings(settings, tmp_path / "w", **panel), registry=registry)
    here, here_pixels, here_region, here_steps, conv_here = turn(local, "here")
    there, there_pixels, there_region, there_steps, conv_there = turn(remote, "there")
    try:
        assert here_steps == there_steps == 3  # the worker's default is 2
        assert here.text == there.text
        assert [a["editor"] for a in here.attempts] == [a["editor"] for a in there.attempts] == ["ip2p-composite"]
        assert np.array_equal(here_region, there_region)  # same long side: the same work-size region
        assert np.abs(here_pixels.astype(int) - there_pixels.astype(int)).mean() < 0.5
        assert here.scores.keys() == there.scores.keys()
        for key, value in here.scores.items():
            if isinstance(value, float):
                assert abs(value - there.scores[key]) < 0.02, (key, value, there.scores[key])
        # the check can fail: the worker's own defaults (what the remote ran before) give another picture
        plain = dict(editor="ip2p-composite", auto_retry=False)
        defaults = SceneWorker(agent_settings(settings, tmp_path / "d", **plain), registry=registry)
        _, other_pixels, other_region, other_steps, conv_other = turn(defaults, "defaults", plain)
        conv_other.close()
        assert other_steps == 2 and not (np.array_equal(other_region, here_region)
                                         and np.abs(other_pixels.astype(int) - here_pixels.astype(int)).mean() < 0.5)
    finally:
        conv_here.close()
        conv_there.close()
