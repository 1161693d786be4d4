"""The worker on Ray Serve, as `localedit worker --ray --replicas 2` starts it on the CPU with the tiny
models, plus the edit batching.

Ray runs as the product runs it: token authentication on (the worker makes its own token) and every
process on loopback; one test lists the listening sockets of the whole process tree. Concurrent
sessions must each get their own results (no cross-talk between requests batched or routed together),
and both replicas must serve. The batching itself is also checked without Ray.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from agent.language.llm import Understander
from agent.runtime.session import Conversations
from tests.conftest import free_port, scene
from tests.helpers import REPO, wait_until
from tests.helpers.scenes import CATS, SIZE, agent_settings, edited_region, inside, pixels
from tests.helpers.worker import SceneRemoteWorker, WorkerProcess
from tools.images import box_to_mask, content_hash
from tools.types import EditRequest, LocaleditError
from tools.worker.wire import decode_image, decode_mask

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
    stronger = EditRequest("ip2p-composite", "make it red", seed=3, guidance_scale=10.0, image_guidance_scale=1.25)
    jobs += [EditJob(images[0], mask, EditRequest("regionwise", "make it red")),  # not batchable: alone
             EditJob(images[0], mask, EditRequest("nope")),  # invalid: fails alone
             EditJob(images[1], mask, stronger)]  # its own guidances: in the same batch (guided_batch)
    answers = service.edit_batch(jobs)

    assert [a["info"]["batch_size"] for a in answers[:4]] == [4, 4, 4, 1] and answers[5]["info"]["batch_size"] == 4
    assert isinstance(answers[4], LocaleditError) and "Unknown editor" in str(answers[4])
    assert all(steps[i] == [1, 2] for i in range(3))  # every request saw its own progress
    for img, answer, req in zip([*images, images[1]], [*answers[:3], answers[5]], [request] * 3 + [stronger]):
        alone = service.edit(EditJob(img, mask, req))
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


@pytest.mark.server
@pytest.mark.slow
@needs_ray
def test_plain_serve_run_beyond_loopback_without_a_token_starts_no_replica(tiny_models_dir, tmp_path):
    """`serve run` of our config with ``http_options.host: 0.0.0.0`` and no worker token: every replica
    refuses to start (the worker's token rule, checked in the replica), so nothing of ours answers.
    Before the module's Ray worker starts (one Ray at a time)."""
    import os
    import secrets
    import subprocess
    import sys
    import time

    import psutil

    repo = REPO
    text = (repo / "serve_config.yaml").read_text()
    assert "host: 127.0.0.1" in text and "port: 8800" in text
    config = tmp_path / "serve.yaml"
    config.write_text(text.replace("host: 127.0.0.1", "host: 0.0.0.0").replace("port: 8800", f"port: {free_port()}")
                      .replace("max_replicas: 8", "max_replicas: 1"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCALEDIT_", "RAY_"))}
    env.update(HOME=str(tmp_path), RAY_USAGE_STATS_ENABLED="0", LOCALEDIT_MODELS_DIR=str(tiny_models_dir),
               LOCALEDIT_DATA_DIR=str(tmp_path / "data"), RAY_AUTH_TOKEN=secrets.token_hex(32))  # auth stays on
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "serve"), "run", str(config)], cwd=repo, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    refusal = "Refusing to listen on 0.0.0.0 without a token"
    tree: dict[int, psutil.Process] = {}  # every process Ray starts under it, to stop by PID at the end

    def look() -> None:
        try:
            tree.update((c.pid, c) for c in psutil.Process(proc.pid).children(recursive=True))
        except psutil.NoSuchProcess:
            pass

    try:
        deadline = time.monotonic() + 180
        while refusal not in log.read_text(errors="replace") and proc.poll() is None:
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            look()
            time.sleep(1)
        assert refusal in log.read_text(errors="replace"), log.read_text(errors="replace")[-3000:]
    finally:
        look()
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        for child in tree.values():  # what Ray started, by its PID
            if child.is_running():
                child.kill()


@pytest.fixture(scope="module")
def ray_worker(tiny_models_dir, tmp_path_factory):
    """``localedit worker --ray`` as a user starts it: a Ray of its own (token auth on, a fresh token
    it makes itself, loopback only) and two replicas, with the tiny models on the CPU."""
    import psutil

    home = tmp_path_factory.mktemp("home")  # no ~/.ray/auth_token: the worker must make its own token
    env = {"HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0"}
    proc = WorkerProcess(tiny_models_dir, free_port(), tmp_path_factory.mktemp("ray") / "worker.log",
                         extra_args=("--ray", "--replicas", "2"), **env)
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        proc.env.pop(name, None)
    proc.start(timeout=300)
    try:
        yield proc
    finally:
        tree = psutil.Process(proc.proc.pid).children(recursive=True) if proc.proc.poll() is None else []
        proc.stop(timeout=60)
        for child in tree:  # anything Ray left behind, by its PID
            if child.is_running():
                child.kill()


@needs_ray
def test_single_machine_ray_listens_on_loopback_only_and_requires_its_token(ray_worker):
    """Finding 1: `localedit worker --ray` once opened an unauthenticated gRPC listener on [::].

    Every socket that any process of the worker's tree listens on must be a loopback address, and
    Ray's own RPC (the GCS) must refuse a call without the cluster token."""
    import ipaddress
    import socket as socketlib

    import grpc
    import psutil
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    root = psutil.Process(ray_worker.proc.pid)
    procs = [root, *root.children(recursive=True)]
    listening = []
    for p in procs:
        try:
            cmd = " ".join(p.cmdline())
            for c in p.net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN or c.type == socketlib.SOCK_DGRAM:
                    listening.append((cmd, c.laddr.ip, c.laddr.port))  # whole: a deep checkout cuts "gcs_server" at 80
        except psutil.NoSuchProcess:
            continue

    def loopback(ip: str) -> bool:
        addr = ipaddress.ip_address(ip)
        return (getattr(addr, "ipv4_mapped", None) or addr).is_loopback

    print("\n".join(f"{ip}:{port}  {cmd[-100:]}" for cmd, ip, port in listening))
    assert [x for x in listening if not loopback(x[1])] == []
    assert any(port == ray_worker.port for _, _, port in listening)  # the HTTP proxy, where --host says
    replicas = [x for x in listening if "ServeReplica" in x[0]]
    assert len({cmd for cmd, _, _ in replicas}) >= 1 and len(replicas) >= 2  # their gRPC servers are here too
    gcs_ports = [port for cmd, _, port in listening if "gcs_server" in cmd]
    assert gcs_ports, [(cmd[-60:], port) for cmd, _, port in listening]

    gcs = next(p for p in procs if "gcs_server" in " ".join(p.cmdline()))
    environ = dict(line.split("=", 1) for line in Path(f"/proc/{gcs.pid}/environ").read_bytes().decode().split("\0")
                   if "=" in line)  # what Ray's processes inherited (the worker made the token after its own start)
    token = environ["RAY_AUTH_TOKEN"]
    assert environ["RAY_AUTH_MODE"] == "token" and len(token) >= 32
    assert not (Path(ray_worker.env["HOME"]) / ".ray" / "auth_token").exists()  # and never wrote it to disk
    assert all(token not in " ".join(p.cmdline()) for p in procs if p.is_running())  # never in argv
    stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(grpc.insecure_channel(f"127.0.0.1:{gcs_ports[0]}"))
    request = gcs_service_pb2.GetClusterIdRequest()
    with pytest.raises(grpc.RpcError) as refused:
        stub.GetClusterId(request, timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError):
        stub.GetClusterId(request, timeout=10, metadata=[("authorization", "Bearer not-the-token")])
    assert stub.GetClusterId(request, timeout=10, metadata=[("authorization", f"Bearer {token}")])


def replicas_answering(url: str, want: int = 2, timeout: float = 300) -> Counter:
    """``{replica: answers}`` of ``/status`` requests, four at a time and with no photo key (so Serve's
    router may pick either replica), sent until ``want`` replicas have answered or ``timeout`` passed:
    on a loaded machine the second replica can come up well after the first."""
    from tools.worker.client import RemoteWorker

    probe = RemoteWorker(url, timeout=60, affinity=False)
    deadline = time.monotonic() + timeout
    try:
        while len(set(probe.replicas) - {"?"}) < want and time.monotonic() < deadline:
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda _: probe.status(), range(4)))
        return probe.replicas
    finally:
        probe.close()


def routed_to(url: str, key: str) -> str:
    """The replica Serve's router sends requests about the photo ``key`` to now. Asked with a request
    the worker refuses (an empty ``/caption``: 422), so asking changes nothing: only an answered
    request makes a replica hold a photo (``tools.worker.serve``)."""
    from tools.worker.wire import AFFINITY_HEADER, REPLICA_HEADER

    answer = httpx.post(f"{url}/caption", json={}, headers={AFFINITY_HEADER: key}, timeout=60)
    assert answer.status_code == 422, answer.text
    return answer.headers.get(REPLICA_HEADER, "?")


@pytest.fixture(scope="module")
def ray_url(ray_worker):
    return ray_worker.url


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

        # both replicas serve (the X-Localedit-Replica header of every answer). Requests about one photo
        # all go to the replica that holds it (affinity), so ask without a photo key until both answered
        served = worker.replicas + replicas_answering(ray_url)
        assert len(set(served) - {"?"}) == 2, served
        status = worker.status()
        assert status["kind"] == "remote" and status["ready"] and status["replica"] in served
        sizes = [r.info.get("batch_size") for r in results]
        print("replicas:", dict(worker.replicas), "edit batch sizes:", sizes)
        assert all(isinstance(n, int) and n >= 1 for n in sizes)
    finally:
        conv.close()
        worker.close()


@needs_ray
def test_follow_ups_reach_the_replica_that_cached_the_photo(ray_url):
    """Cache affinity (Ray Serve multiplexing by content hash): every follow-up finds its caption and
    SAM embedding cached. Without the header the router spreads requests, and some miss."""
    from bench.throughput import fresh_photo
    from tools.worker.client import RemoteWorker

    def photos() -> list[Image.Image]:
        return [fresh_photo(SIZE) for _ in range(16)]  # each with its own noise stamp

    box = CATS[0]
    with_affinity = RemoteWorker(ray_url, timeout=120)
    seen = photos()
    holders: dict[str, set[str]] = {}  # photo key -> the replicas that answered a request about it (hold it)

    def asked(p: Image.Image, call) -> Any:
        before = Counter(with_affinity.replicas)
        answer = call()
        holders.setdefault(content_hash(p), set()).update((with_affinity.replicas - before).keys())
        return answer

    assert not any(asked(p, lambda: with_affinity.caption(p)).cache_hit for p in seen)
    for p in seen:
        asked(p, lambda: with_affinity.segment(p, [box]))
    # the replicas report the photos they hold to Serve's router: wait until it routes every photo to a
    # replica holding it, three rounds running (a photo it does not know yet goes to either replica)
    rounds = []
    wait_until(lambda: rounds.append(all(routed_to(ray_url, key) in held for key, held in holders.items()))
               or rounds[-3:] == [True] * 3, "Serve's router knows which replica holds each photo", timeout=120,
               every=0.2)
    assert all(with_affinity.caption(p).cache_hit for p in seen)
    assert all(with_affinity.segment(p, [box]).cache_hit for p in seen)
    assert len(set(with_affinity.replicas) - {"?"}) == 2  # both replicas hold photos

    without = RemoteWorker(ray_url, timeout=120, affinity=False)
    other = photos()
    for p in other:
        without.caption(p)  # no key: no replica reports holding it, so there is nothing to wait for
    hits = [without.caption(p).cache_hit for p in other]
    assert not all(hits), "routing without the photo's key cannot keep every follow-up on its replica"
    with_affinity.close()
    without.close()
