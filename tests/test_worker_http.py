"""The HTTP worker (``python -m tools.worker``) in a subprocess on a loopback port, with the tiny models.

The agent talks to it through :class:`tools.worker.client.RemoteWorker` exactly as it talks to the in-process
worker. As in ``test_agent``, only grounding is fixed on the client side (the tiny GroundingDINO's boxes
are noise): ``SceneRemoteWorker`` still sends every /ground request, then answers with the scene's boxes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import httpx
import numpy as np
import pytest
from PIL import Image

from agent.llm import Understander
from agent.session import Conversations
from tests.conftest import free_port, scene
from tests.scenes import CATS, SIZE, agent_settings, edited_region, inside, pixels
from tools.worker.client import RemoteWorker
from tools.worker.wire import encode_image
from tools.types import Detection, LocaleditError, WorkerUnavailableError

REPO = Path(__file__).resolve().parents[1]
TOKEN = "test-token-0123456789"
MAX_UPLOAD = 300_000  # bytes per image: small, so an oversize request is cheap to make


class WorkerProcess:
    """``python -m tools.worker`` on 127.0.0.1:``port``; started, killed and restarted by its PID."""

    def __init__(self, models_dir: Path, port: int, log: Path, token: Optional[str] = None, **env: str):
        self.port, self.log, self.token = port, log, token
        self.url = f"http://127.0.0.1:{port}"
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "LOCALEDIT_DEVICE": "cpu", "LOCALEDIT_MAX_SIDE": "64",
                    "LOCALEDIT_STEPS": "2", "LOCALEDIT_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
                    "LOCALEDIT_WORKER_TIMEOUT": "60", "OMP_NUM_THREADS": "1", **env}
        self.env.pop("LOCALEDIT_WORKER_TOKEN", None)
        self.models_dir = models_dir
        self.proc: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 120.0) -> "WorkerProcess":
        args = [sys.executable, "-m", "tools.worker", "--port", str(self.port), "--models", str(self.models_dir)]
        if self.token:
            args += ["--token", self.token]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the worker exited ({self.proc.returncode}): {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        pytest.fail(f"the worker was not ready within {timeout:.0f} s: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as when a machine dies."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def status(self) -> dict:
        return httpx.get(f"{self.url}/status", headers={"Authorization": f"Bearer {self.token}"}, timeout=10).json()


class SceneRemoteWorker(RemoteWorker):
    """The remote worker; /ground runs on the server, the answer is the test scene's boxes."""

    def ground(self, image, phrase, **kwargs):
        super().ground(image, phrase, **kwargs)
        if "cat" in phrase.lower().split():
            return [Detection("cat", 0.9 - 0.01 * i, box) for i, box in enumerate(CATS)]
        return []


@pytest.fixture(scope="module")
def server(tiny_models_dir, tmp_path_factory):
    proc = WorkerProcess(tiny_models_dir, free_port(), tmp_path_factory.mktemp("worker") / "worker.log",
                         token=TOKEN).start()
    yield proc
    proc.stop()


@pytest.fixture
def remote(server):
    worker = SceneRemoteWorker(server.url, token=TOKEN, timeout=60)
    yield worker
    worker.close()


@pytest.fixture
def conversations(settings, remote, tmp_path):
    conv = Conversations(agent_settings(settings, tmp_path), worker=remote, understander=Understander(None))
    yield conv
    conv.close()


def cache_counts(status: dict) -> dict[str, tuple[int, int]]:
    """``{cache: (hits, misses)}`` from /status."""
    return {name: (stats["hits"], stats["misses"]) for name, stats in status["caches"].items()}


def test_agent_turn_through_the_http_worker_then_cache_hits(server, conversations, photo_path):
    chat = conversations.session()
    chat.send("", image=photo_path)
    original = pixels(chat.current_image_path())
    reply = chat.send("turn the leftmost cat into a fox")
    assert not reply.error and not reply.question, reply.text
    assert len(chat.versions()) == 2
    region = edited_region(chat)
    after = pixels(chat.current_image_path())
    assert region.any() and inside(region, CATS[0])
    assert np.array_equal(after[~region], original[~region])  # outside the region: bit-identical
    status = server.status()
    assert status["kind"] == "http" and status["ready"]
    assert {"/caption", "/ground", "/segment", "/edit", "/score"} <= set(status["requests"])

    before = cache_counts(status)
    again = conversations.session()  # a second turn on the same image
    again.send("", image=photo_path)
    second = again.send("turn the leftmost cat into a fox")
    assert not second.error, second.text
    after = cache_counts(server.status())
    # neither BLIP-2 nor the SAM image encoder ran again: no new misses (SAM may even keep the image
    # set in its predictor, a hit that does not go through the LRU); caption and CLIP hit the LRU
    assert after["caption"][1] == before["caption"][1] and after["sam"][1] == before["sam"][1], (before, after)
    assert after["caption"][0] > before["caption"][0] and after["clip"][0] > before["clip"][0], (before, after)
    assert second.scores["cache_hits"] >= 1  # the turn's own report says the CLIP embedding hit


def test_token_refused_and_accepted(server):
    image = encode_image(scene())
    assert httpx.post(f"{server.url}/caption", json={"image": image}).status_code == 401
    wrong = httpx.post(f"{server.url}/caption", json={"image": image}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "token" in wrong.json()["detail"]
    assert httpx.get(f"{server.url}/status").status_code == 401
    assert httpx.get(f"{server.url}/health").status_code == 200  # probes need no token
    with pytest.raises(LocaleditError, match="token"):
        RemoteWorker(server.url, token="wrong").caption(scene())
    ok = RemoteWorker(server.url, token=TOKEN)
    assert ok.caption(scene()).text and ok.ready()
    assert ok.status()["kind"] == "remote"  # the client says where it talks to
    ok.close()


def test_oversize_and_malformed_requests_are_refused_and_the_worker_keeps_serving(server, remote):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    big = httpx.post(f"{server.url}/caption", content=b"x" * 3_000_000, headers=auth)
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
        answer = httpx.post(server.url + path, content=body, headers={**auth, "Content-Type": "application/json"})
        assert answer.status_code == status, (path, body[:40], answer.text)
        assert answer.json()["detail"].endswith("."), answer.json()
    assert httpx.get(f"{server.url}/health").json()["ok"]
    assert remote.caption(scene()).text  # still serving
    assert server.proc.poll() is None


def test_refuses_to_listen_beyond_loopback_without_a_token(tiny_models_dir):
    env = {k: v for k, v in os.environ.items() if k != "LOCALEDIT_WORKER_TOKEN"}
    out = subprocess.run([sys.executable, "-m", "tools.worker", "--host", "0.0.0.0", "--port", str(free_port()),
                          "--models", str(tiny_models_dir)], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "without a token" in out.stderr


def test_worker_killed_mid_turn_then_restarted(server, conversations, photo_path):
    chat = conversations.session()
    chat.send("", image=photo_path)
    first = chat.current_image_path()
    original = pixels(first)

    def kill_on_first_step(event: dict) -> None:
        if event.get("stage") == "edit":
            server.kill()

    reply = chat.send("make the leftmost cat red", progress=kill_on_first_step)
    assert server.proc.poll() is not None, "the worker was killed during the turn"
    assert reply.error and "not reachable" in reply.text and "\n" not in reply.text
    assert len(chat.versions()) == 1 and chat.current_image_path() == first
    assert np.array_equal(pixels(first), original)  # the conversation's image is intact

    with pytest.raises(WorkerUnavailableError, match="not reachable"):
        conversations.worker.caption(scene())

    server.start()  # the same port
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


def test_a_cancelled_remote_edit_stops_on_the_server(server, remote):
    """Stop on the client closes the stream; the server stops the edit at its next step, so the
    model is free at once (a 1000-step edit left running would hold it for a long while)."""
    import threading

    from tools.images import box_to_mask
    from tools.types import Cancelled, EditRequest

    photo = scene(SIZE, boxes=CATS)
    flag, steps = threading.Event(), []
    before = server.status()["failures"].get("cancelled", 0)

    def progress(step: int, total: int) -> None:
        steps.append(step)
        if step >= 2:
            flag.set()

    started = time.monotonic()
    with pytest.raises(Cancelled):
        remote.edit(photo, box_to_mask(CATS[0], SIZE), EditRequest("ip2p-composite", "make it red", steps=1000),
                    progress=progress, cancel=flag)
    assert 2 <= max(steps) < 50, steps
    assert remote.caption(photo).text  # the model lock is free again
    assert time.monotonic() - started < 30
    deadline = time.monotonic() + 10
    while server.status()["failures"].get("cancelled", 0) == before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server.status()["failures"].get("cancelled", 0) == before + 1  # the server stopped it, not finished it
    assert server.proc.poll() is None


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
