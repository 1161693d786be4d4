"""``localedit worker``: the command line of the worker service (``python -m tools.worker``).

    localedit worker                                  # http://127.0.0.1:8800 (tools.worker.server)
    localedit worker --host 0.0.0.0 --token SECRET    # any other address REQUIRES a token
    localedit worker --ray                            # Ray Serve (tools.worker.serve)
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional

from tools.config import Settings
from tools.types import LocaleditError
from tools.worker.server import DEFAULT_PORT, check_bind, serve_http


def worker_settings(args: argparse.Namespace) -> Settings:
    """Settings from the environment with the command line's overrides."""
    overrides = {k: v for k, v in {"models_dir": args.models, "device": args.device}.items() if v is not None}
    return Settings(**overrides)


def cmd_worker(args: argparse.Namespace) -> int:
    settings = worker_settings(args)
    token = args.token or settings.worker_token
    check_bind(args.host, token)
    if args.ray:
        from tools.worker.serve import run_ray

        return run_ray(settings, host=args.host, port=args.port, token=token, config=args.config)
    serve_http(settings, args.host, args.port, token)
    return 0


def add_cli(subparsers) -> argparse.ArgumentParser:
    """Add the ``worker`` sub-command to ``subparsers`` (of the ``localedit`` parser)."""
    w = subparsers.add_parser("worker", help="serve the vision models over HTTP (one machine, or Ray Serve)")
    w.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; "
                   "any other needs a token)")
    w.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    w.add_argument("--token", default=None, help="bearer token clients must send (default: $LOCALEDIT_WORKER_TOKEN)")
    w.add_argument("--models", default=None, help="folder with one sub-folder per model role (LOCALEDIT_MODELS_DIR)")
    w.add_argument("--device", default=None, help="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    w.add_argument("--ray", action="store_true", help="run on Ray Serve: one replica per GPU, autoscaled")
    w.add_argument("--config", default=None, help="with --ray: a Ray Serve config file (e.g. serve_config.yaml), "
                   "deployed with `serve run`")
    w.set_defaults(func=cmd_worker)
    return w


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m tools.worker [worker options]``: the same as ``localedit worker``."""
    parser = argparse.ArgumentParser(prog="python -m tools.worker")
    add_cli(parser.add_subparsers())
    args = parser.parse_args(["worker", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return args.func(args)
    except LocaleditError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
