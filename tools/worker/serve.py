"""The vision worker as a Ray Serve application: many GPUs or machines, one HTTP endpoint.

    localedit worker --ray                             # a Ray of its own on this machine, loopback only
    localedit worker --ray --address HOST:6379         # join a Ray cluster (its token: RAY_AUTH_TOKEN ...)
    localedit worker --ray --config serve_config.yaml  # the same through `serve run` and the config file
    serve run serve_config.yaml                        # plain Ray Serve

No open doors (:func:`start_ray`): Ray's own token authentication is always on (``RAY_AUTH_MODE=token``;
a Ray of our own gets a fresh random token in its processes' environment unless one is configured),
and a Ray of our own keeps every one of its processes on loopback: the node IP is 127.0.0.1, the
dashboard is off, and each replica's inter-deployment gRPC server (which Ray Serve 2.60 binds to
``[::]`` with no option) is bound to 127.0.0.1 (:func:`keep_replica_grpc_on_loopback`). Only the HTTP
proxy listens where ``--host`` (or a config's ``http_options.host``) says, behind the worker's own token
rule: each replica checks it, so a plain ``serve run`` on 0.0.0.0 without a token starts no replica.

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
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from ray import serve  # noqa: E402

from tools.config import Settings  # noqa: E402
from tools.types import LocaleditError  # noqa: E402
from tools.worker import configured_token  # noqa: E402
from tools.worker.server import EditJob, WorkerService, check_bind, create_app, is_loopback  # noqa: E402
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
        token: the bearer token clients must send (None: the settings' ``worker_token`` or ``worker_token_file``).
    """

    def __init__(self, settings: Optional[dict] = None, token: Optional[str] = None):
        import ray

        if is_loopback(ray.util.get_node_ip_address()):  # a Ray kept on this machine: so is this replica
            keep_replica_grpc_on_loopback()
        s = Settings(**settings) if settings else Settings()
        self.token = token or configured_token(s)  # LOCALEDIT_WORKER_TOKEN or _TOKEN_FILE (`serve run`)
        check_bind(serve_http_host(), self.token)  # plain `serve run` too: beyond loopback, a token or no replica
        replica = serve.get_replica_context().replica_id.unique_id
        self.service = WorkerService(s, replica=replica, kind="ray")
        self.service.warm_up()  # the replica counts as started once its models are warm

    def __serve_build_asgi_app__(self):
        app = create_app(self.service, token=self.token, edit_runner=self.run_edit, warm_in_background=False,
                         host=serve_http_host())

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


def serve_http_host() -> str:
    """Where this cluster's Serve HTTP proxies listen (the config's ``http_options.host``), as the
    Serve controller knows it; called in a replica."""
    import ray
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    return ray.get(controller.get_http_config.remote()).host


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


# --------------------------------------------------------------------------- starting Ray, doors closed

LOOPBACK = "127.0.0.1"
_TOKEN_SOURCES = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def keep_replica_grpc_on_loopback() -> None:
    """Bind this replica's inter-deployment gRPC server to 127.0.0.1 instead of ``[::]``.

    Ray Serve 2.60 starts it in ``ReplicaActor._on_initialized`` with a hard-coded ``"[::]:0"`` and
    no setting; the replica's constructor (ours) runs before that, so wrapping the module's
    ``add_port_to_grpc_server`` here changes only that address, in this replica process. Called only
    when the node itself is on loopback, where no other machine could reach the port anyway.
    """
    from ray.serve._private import replica

    bind = replica.add_port_to_grpc_server
    if getattr(bind, "localedit_loopback", False):
        return

    def on_loopback(server, address: str):
        host, _, port = address.rpartition(":")
        return bind(server, f"{LOOPBACK}:{port}" if host in ("[::]", "0.0.0.0", "") else address)

    on_loopback.localedit_loopback = True  # type: ignore[attr-defined]
    replica.add_port_to_grpc_server = on_loopback


def ray_environment(address: Optional[str] = None) -> dict[str, str]:
    """The environment variables that start (or join) Ray with no open doors; also set in ``os.environ``.

    * ``RAY_AUTH_MODE=token`` always: every Ray RPC and HTTP entry point needs the cluster token
      (refused with :class:`~tools.types.LocaleditError` if the environment turns it off);
    * a Ray of our own (no ``address``) with no token configured (``RAY_AUTH_TOKEN``,
      ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``) gets a fresh random ``RAY_AUTH_TOKEN``:
      inherited by its processes, never written to disk or argv;
    * a Ray of our own keeps its node IP on loopback: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is
      Ray's switch for "no cluster, stay on this machine" (its default on macOS and Windows).
    """
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is not None and mode.strip().lower() != "token":
        raise LocaleditError(f"localedit keeps Ray's token authentication on, but RAY_AUTH_MODE={mode}; unset it "
                             f"or set RAY_AUTH_MODE=token.")
    env = {"RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": os.environ.get("RAY_USAGE_STATS_ENABLED", "0")}
    if address is None:
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        if not any(os.environ.get(k) for k in _TOKEN_SOURCES) and not (Path.home() / ".ray" / "auth_token").is_file():
            env["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    os.environ.update(env)
    return env


def start_ray(address: Optional[str] = None, **init: Any) -> None:
    """``ray.init`` with no open doors (see :func:`ray_environment`): join ``address``, or start a
    Ray of our own with every process on loopback and no dashboard. ``init``: more ``ray.init``
    arguments (e.g. ``num_cpus``)."""
    import ray
    from ray._private import ray_constants
    from ray._raylet import Config

    ray_environment(address)
    # Ray read its settings when it was imported; re-read them as Ray itself does when it turns token
    # auth on (authentication_token_setup._enable_token_auth), and apply the loopback switch here too
    Config.initialize("")
    ray_constants.ENABLE_RAY_CLUSTER = address is not None
    try:
        if address is not None:
            ray.init(address=address, **init)
            return
        ray.init(_node_ip_address=LOOPBACK, include_dashboard=False, **init)
    except ConnectionError as err:
        raise LocaleditError(f"Could not reach the Ray cluster at {address}: {str(err).splitlines()[0]}") from err
    except Exception as err:
        if type(err).__name__ == "AuthenticationError":
            raise LocaleditError("Ray's token authentication is on and the cluster refused us: give its token in "
                                 "RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token "
                                 "(`ray get-auth-token` on the head node prints it).") from err
        raise


def run_ray(settings: Settings, host: str = "127.0.0.1", port: int = 8800, token: Optional[str] = None,
            config: Optional[str] = None, address: Optional[str] = None, replicas: Optional[int] = None) -> int:
    """``localedit worker --ray``: start or join Ray (:func:`start_ray`), deploy and block until
    interrupted, then shut down what was started. ``replicas``: a fixed number (default: autoscaled)."""
    check_bind(host, token)
    if config:
        return _serve_run_config(Path(config), token, address)
    import ray

    settings_dict = settings.model_dump(mode="json")
    start_ray(address)
    signal.signal(signal.SIGTERM, _interrupt)  # after ray.init, which installs its own handler
    args: dict[str, Any] = {"settings": settings_dict, "token": token}
    if replicas:
        args.update(min_replicas=replicas, max_replicas=replicas)
    try:
        serve.start(http_options={"host": host, "port": port, "request_timeout_s": settings.worker_timeout + 30})
        print(f"localedit worker on Ray Serve at http://{host}:{port} (Ray {'cluster ' + address if address else 'on loopback'}, "
              f"token auth on); GET /ready says when a replica is warm", file=sys.stderr, flush=True)
        serve.run(build_app(args), name="localedit", route_prefix="/", blocking=True)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


def _serve_run_config(config: Path, token: Optional[str], address: Optional[str]) -> int:
    """Check the config's address against the token rule, start (or join) Ray with no open doors,
    then run ``serve run`` on it as a child process until interrupted."""
    import ray
    import yaml

    if not config.is_file():
        raise LocaleditError(f"The Ray Serve config file {config} does not exist.")
    http = (yaml.safe_load(config.read_text()) or {}).get("http_options") or {}
    check_bind(str(http.get("host", "127.0.0.1")), token)
    start_ray(address)
    signal.signal(signal.SIGTERM, _interrupt)
    env = dict(os.environ)
    if token:
        env["LOCALEDIT_WORKER_TOKEN"] = token  # the replicas read it (never argv)
    serve_exe = Path(sys.executable).parent / "serve"
    gcs = ray.get_runtime_context().gcs_address
    child = subprocess.Popen([str(serve_exe), "run", "--address", gcs, str(config)], env=env)
    try:
        return child.wait()
    except KeyboardInterrupt:
        child.terminate()
        child.wait()
        return 0
    finally:
        ray.shutdown()


def _interrupt(signum, frame):
    """``kill PID`` shuts down like Ctrl-C."""
    raise KeyboardInterrupt


__all__ = ["VisionWorker", "build_app", "run_ray", "start_ray", "ray_environment", "keep_replica_grpc_on_loopback",
           "gpu_count"]
