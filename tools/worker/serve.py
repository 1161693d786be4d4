"""The vision worker as a Ray Serve application: many GPUs or machines, one HTTP endpoint.

    localedit worker --ray                             # serve.run on a local (or RAY_ADDRESS) cluster
    localedit worker --ray --config serve_config.yaml  # the same through `serve run` and the config file
    serve run serve_config.yaml                        # plain Ray Serve

Each replica is one :class:`VisionWorker`: the same FastAPI app and routes as ``localedit worker``
(:func:`tools.worker.server.create_app`), so :class:`tools.worker.client.RemoteWorker` talks to it unchanged.
One replica per GPU (``num_gpus=1``; on a machine without GPUs, ``num_cpus``), autoscaled by Ray
Serve on queue length (``target_ongoing_requests``); Ray's proxy spreads requests over replicas.
Concurrent edits that reach one replica are gathered by ``@serve.batch``: InstructPix2Pix edits with
the same work size and knobs run as one batched pipeline call (:meth:`WorkerService.edit_batch`),
the rest one by one. No scheduler or load balancer of our own.

Cache affinity is Ray Serve's model multiplexing, keyed by the photo: the client sends the photo's
content hash as the multiplexed model id (:data:`~tools.worker.wire.AFFINITY_HEADER`) with the
requests that use the per-image caches; each replica "loads" the ids it served
(:meth:`VisionWorker.hold_image`, at most ``affinity_images`` of them, least recently used first out),
and Serve's router sends later requests with an id to the replica holding it. Edits carry no id, so
concurrent edits of different photos still meet in one batch.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any, Optional

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from ray import serve  # noqa: E402

from tools.config import Settings  # noqa: E402
from tools.worker.server import EditJob, WorkerService, check_bind, create_app  # noqa: E402
from tools.worker.wire import AFFINITY_HEADER  # noqa: E402

MAX_BATCH_SIZE = 4
BATCH_WAIT_S = 0.05
AFFINITY_IMAGES = 64
"""Photos a replica holds for routing (its caches, 512 MiB each by default, keep about this many)."""
DEFAULT_AUTOSCALING = {"min_replicas": 1, "target_ongoing_requests": 2, "upscale_delay_s": 10,
                       "downscale_delay_s": 300}


@serve.deployment(name="VisionWorker", max_ongoing_requests=8, health_check_period_s=10,
                  health_check_timeout_s=60, graceful_shutdown_timeout_s=30)
@serve.ingress()
class VisionWorker:
    """One replica: every model loaded and warmed in the constructor, then the worker's HTTP app.

    Args:
        settings: :class:`~tools.config.Settings` fields (None: the replica's environment).
        token: the bearer token clients must send (None: ``settings.worker_token``).
    """

    def __init__(self, settings: Optional[dict] = None, token: Optional[str] = None):
        s = Settings(**settings) if settings else Settings()
        replica = serve.get_replica_context().replica_id.unique_id
        self.service = WorkerService(s, replica=replica, kind="ray")
        self.service.warm_up()  # the replica counts as started once its models are warm
        self.token = token or s.worker_token

    def __serve_build_asgi_app__(self):
        app = create_app(self.service, token=self.token, edit_runner=self.run_edit, warm_in_background=False)

        @app.middleware("http")
        async def affinity(request, call_next):
            response = await call_next(request)
            key = request.headers.get(AFFINITY_HEADER)
            if key and response.status_code < 400:  # served (token checked): this replica now caches the photo
                await self.hold_image(key[:64])
            return response

        return app

    @serve.multiplexed(max_num_models_per_replica=AFFINITY_IMAGES)
    async def hold_image(self, key: str) -> str:
        """Ray Serve's multiplexed "model" for a photo: nothing to load (the caches fill as the request
        runs); holding the id is what makes the router send the photo's next requests here."""
        return key

    def check_health(self) -> None:
        """Ray Serve's health check: a replica whose warm-up failed is replaced."""
        if not self.service.ready:
            raise RuntimeError(self.service.warm_error or "not warmed up")

    async def run_edit(self, job: EditJob) -> dict:
        answer = await self.edit_batch(job)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=BATCH_WAIT_S)
    async def edit_batch(self, jobs: list[EditJob]) -> list[Any]:
        """The edits that arrived together, run in a thread (answers or exceptions, in order)."""
        return await asyncio.get_running_loop().run_in_executor(None, self.service.edit_batch, jobs)


def gpu_count() -> int:
    """GPUs of the Ray cluster when connected, else of this machine."""
    import ray

    if ray.is_initialized():
        return int(ray.cluster_resources().get("GPU", 0))
    import torch

    return torch.cuda.device_count()


def build_app(args: Optional[dict] = None):
    """The Serve application (``import_path: tools.worker.serve:build_app`` in a config file).

    ``args`` (all optional): ``settings`` (dict of Settings fields), ``token``, ``num_cpus`` (per
    replica when there is no GPU, default 1), ``min_replicas`` / ``max_replicas`` /
    ``target_ongoing_requests`` (autoscaling; ``max_replicas`` defaults to the number of GPUs).
    """
    args = dict(args or {})
    gpus = gpu_count()
    actor = {"num_gpus": 1} if gpus else {"num_cpus": float(args.get("num_cpus", 1))}
    autoscaling = {**DEFAULT_AUTOSCALING, "max_replicas": max(1, gpus)}
    autoscaling.update({k: args[k] for k in ("min_replicas", "max_replicas", "target_ongoing_requests") if k in args})
    autoscaling["max_replicas"] = max(autoscaling["max_replicas"], autoscaling["min_replicas"])
    token = args.get("token") or os.environ.get("LOCALEDIT_WORKER_TOKEN") or None
    return VisionWorker.options(ray_actor_options=actor, autoscaling_config=autoscaling).bind(
        settings=args.get("settings"), token=token)


def run_ray(settings: Settings, host: str = "127.0.0.1", port: int = 8800, token: Optional[str] = None,
            config: Optional[str] = None) -> int:
    """``localedit worker --ray``: deploy and block until interrupted, then shut down what was started."""
    check_bind(host, token)
    if config:
        return _serve_run_config(Path(config), token)
    import ray

    def stop(signum, frame):  # `kill PID` shuts down like Ctrl-C
        raise KeyboardInterrupt

    settings_dict = settings.model_dump(mode="json")
    ray.init(include_dashboard=False, ignore_reinit_error=True)
    signal.signal(signal.SIGTERM, stop)  # after ray.init, which installs its own handler
    try:
        serve.start(http_options={"host": host, "port": port, "request_timeout_s": settings.worker_timeout + 30})
        print(f"localedit worker on Ray Serve at http://{host}:{port}; GET /ready says when a replica is warm",
              file=sys.stderr, flush=True)
        serve.run(build_app({"settings": settings_dict, "token": token}), name="localedit", route_prefix="/",
                  blocking=True)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


def _serve_run_config(config: Path, token: Optional[str]) -> int:
    """Check the config's address against the token rule, then hand over to ``serve run``."""
    import yaml

    if not config.is_file():
        from tools.types import LocaleditError

        raise LocaleditError(f"The Ray Serve config file {config} does not exist.")
    http = (yaml.safe_load(config.read_text()) or {}).get("http_options") or {}
    check_bind(str(http.get("host", "127.0.0.1")), token)
    if token:
        os.environ["LOCALEDIT_WORKER_TOKEN"] = token
    serve_exe = Path(sys.executable).parent / "serve"
    os.execv(str(serve_exe), [str(serve_exe), "run", str(config)])
    return 0  # not reached


__all__ = ["VisionWorker", "build_app", "run_ray", "gpu_count"]
