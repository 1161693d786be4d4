"""The worker on Ray Serve, locally on the CPU with two replicas and the tiny models, plus the edit batching.

Concurrent sessions must each get their own results (no cross-talk between requests batched or routed
together), and both replicas must serve. The batching itself is also checked without Ray.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib.util import find_spec

import httpx
import numpy as np
import pytest
from PIL import Image

from agent.llm import Understander
from agent.session import Conversations
from tests.conftest import free_port, scene
from tests.scenes import CATS, SIZE, agent_settings, edited_region, inside, pixels
from tests.test_worker_http import SceneRemoteWorker
from tools.images import box_to_mask
from tools.worker.wire import decode_image, decode_mask
from tools.types import EditRequest, LocaleditError

needs_ray = pytest.mark.skipif(find_spec("ray") is None or find_spec("ray.serve") is None,
                               reason="ray[serve] is not installed (pip install 'ray[serve]')")


def tinted(i: int) -> Image.Image:
    """The cat scene, made distinct per session (background shifted by ``i``)."""
    base = np.asarray(scene(SIZE, boxes=CATS)).astype(np.int16)
    return Image.fromarray(np.clip(base + 23 * i - 40, 0, 255).astype(np.uint8))


def differs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# --------------------------------------------------------------------------- batching, no Ray


def test_batched_edits_match_one_by_one_and_bad_ones_fail_alone(settings, registry):
    from tools.worker.server import EditJob, WorkerService
    from tools.worker import LocalWorker

    service = WorkerService(settings, worker=LocalWorker(settings, registry=registry))
    mask = box_to_mask(CATS[0], SIZE)
    request = EditRequest("ip2p-composite", "make it red", seed=3)
    images = [tinted(i) for i in range(3)]
    steps: dict[int, list[int]] = {i: [] for i in range(3)}
    jobs = [EditJob(img, mask, request, progress=lambda s, t, i=i: steps[i].append(s)) for i, img in enumerate(images)]
    jobs += [EditJob(images[0], mask, EditRequest("regionwise", "make it red")),  # not batchable: alone
             EditJob(images[0], mask, EditRequest("nope"))]  # invalid: fails alone
    answers = service.edit_batch(jobs)

    assert [a["info"]["batch_size"] for a in answers[:4]] == [3, 3, 3, 1]
    assert isinstance(answers[4], LocaleditError) and "Unknown editor" in str(answers[4])
    assert all(steps[i] == [1, 2] for i in range(3))  # every request saw its own progress
    for img, answer in zip(images, answers[:3]):
        alone = service.edit(EditJob(img, mask, request))
        got, single = np.asarray(decode_image(answer["image"])), np.asarray(decode_image(alone["image"]))
        region = decode_mask(answer["region"])
        assert np.array_equal(got[~region], np.asarray(img)[~region])  # its own background
        assert differs(got, single) < 1.0  # the same edit as alone (batched float maths may round apart)


def test_a_cancelled_batch_member_does_not_fail_the_others(settings, registry):
    """One job stopped during the batched call, one stopped before it: the rest finish, as alone."""
    import threading

    from tools.types import Cancelled
    from tools.worker import LocalWorker
    from tools.worker.server import EditJob, WorkerService

    service = WorkerService(settings, worker=LocalWorker(settings, registry=registry))
    mask = box_to_mask(CATS[0], SIZE)
    request = EditRequest("ip2p-composite", "make it red", seed=3, steps=3)
    images = [tinted(i) for i in range(4)]
    flags = [threading.Event() for _ in images]
    flags[3].set()  # the client went away before the batch ran

    def progress(i: int):
        def step(s: int, total: int) -> None:
            if i == 1 and s == 1:
                flags[1].set()  # the client goes away after the first step
        return step

    jobs = [EditJob(img, mask, request, progress=progress(i), cancel=flags[i]) for i, img in enumerate(images)]
    answers = service.edit_batch(jobs)
    assert isinstance(answers[1], Cancelled) and isinstance(answers[3], Cancelled), answers
    for i in (0, 2):
        alone = service.edit(EditJob(images[i], mask, request))
        got, single = np.asarray(decode_image(answers[i]["image"])), np.asarray(decode_image(alone["image"]))
        assert differs(got, single) < 1.0  # finished, and its own edit
    assert service.status()["failures"]["cancelled"] == 2
    assert service.budget.used == 0  # every job gave its memory reservation back


# --------------------------------------------------------------------------- Ray Serve


@pytest.fixture(scope="module")
def ray_url(settings):
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["RAY_AUTH_MODE"] = "disabled"
    import ray
    from ray import serve

    from tools.worker.serve import build_app

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        args = {"settings": settings.model_dump(mode="json"), "num_cpus": 1, "min_replicas": 2, "max_replicas": 2}
        serve.run(build_app(args), name="localedit", route_prefix="/")  # returns once both replicas are warm
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/ready", timeout=30).status_code == 200
        yield url
    finally:
        serve.shutdown()
        ray.shutdown()


@needs_ray
def test_concurrent_sessions_on_ray_serve_get_their_own_results_from_both_replicas(ray_url, settings, tmp_path):
    worker = SceneRemoteWorker(ray_url, timeout=120)
    conv = Conversations(agent_settings(settings, tmp_path), worker=worker, understander=Understander(None))
    sessions = 4

    def turn(i: int) -> tuple[int, str]:
        path = tmp_path / f"photo{i}.png"
        tinted(i).save(path)
        chat = conv.session()
        chat.send("", image=path)
        original = pixels(chat.current_image_path())
        reply = chat.send("make the leftmost cat red")
        assert not reply.error and not reply.question, reply.text
        region = edited_region(chat)
        after = pixels(chat.current_image_path())
        assert inside(region, CATS[0]) and np.array_equal(after[~region], original[~region])
        assert differs(original, np.asarray(tinted(i))) == 0  # its own photo, nobody else's
        return i, chat.current_image_path()

    try:
        with ThreadPoolExecutor(sessions) as pool:
            done = list(pool.map(turn, range(sessions)))
        assert sorted(i for i, _ in done) == list(range(sessions))
        assert len({path for _, path in done}) == sessions

        # concurrent raw edits of different images: each answer is the edit of ITS OWN image
        mask = box_to_mask(CATS[1], SIZE)
        request = EditRequest("ip2p-composite", "make it blue", seed=7)
        images = [tinted(i) for i in range(6)]
        barrier = threading.Barrier(len(images))

        def edit(img: Image.Image):
            barrier.wait(timeout=60)
            return worker.edit(img, mask, request)

        with ThreadPoolExecutor(len(images)) as pool:
            results = list(pool.map(edit, images))
        for img, res in zip(images, results):
            got, own = np.asarray(res.image), np.asarray(img)
            assert np.array_equal(got[~res.region], own[~res.region])
        solo = worker.edit(images[0], mask, request)
        assert differs(np.asarray(solo.image), np.asarray(results[0].image)) < 1.0
        assert all(differs(np.asarray(solo.image), np.asarray(r.image)) > 1.0 for r in results[1:])

        # both replicas served (the X-Localedit-Replica header of every answer)
        for _ in range(40):
            if len(worker.replicas) >= 2:
                break
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda _: worker.caption(images[0]), range(4)))
        assert len(set(worker.replicas) - {"?"}) == 2, worker.replicas
        status = worker.status()
        assert status["kind"] == "remote" and status["ready"] and status["replica"] in worker.replicas
        sizes = [r.info.get("batch_size") for r in results]
        print("replicas:", dict(worker.replicas), "edit batch sizes:", sizes)
        assert all(isinstance(n, int) and n >= 1 for n in sizes)
    finally:
        conv.close()
        worker.close()
