"""``localedit worker``: the command line of the worker service (``python -m tools.worker``).

    localedit worker                                        # http://127.0.0.1:8800 (tools.worker.server)
    localedit worker --host 0.0.0.0 --token-file ~/.tok     # any other address REQUIRES a token
    localedit worker --ray                                  # Ray Serve on a loopback-only Ray of its own
    localedit worker --ray --address 10.0.0.5:6379          # Ray Serve on a Ray cluster (its token auth)

The token comes from ``--token-file``, ``LOCALEDIT_WORKER_TOKEN`` or ``LOCALEDIT_WORKER_TOKEN_FILE``
(``--token`` works too, but any user of the machine can read a command line in ``ps``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional

from pydantic import ValidationError

from tools.config import Settings
from tools.http_guard import bind
from tools.types import LocaleditError
from tools.worker.server import DEFAULT_PORT, check_bind, serve_http


def worker_settings(args: argparse.Namespace) -> Settings:
    """Settings from the environment with the command line's overrides."""
    overrides = {k: v for k, v in {"models_dir": args.models, "device": args.device}.items() if v is not None}
    try:
        return Settings(**overrides)
    except ValidationError as err:
        first = err.errors()[0]
        name = ".".join(str(p) for p in first.get("loc", ())) or "a setting"
        raise LocaleditError(f"The setting {name} (LOCALEDIT_{name.upper()}) is invalid: "
                             f"{str(first.get('msg', 'bad value')).rstrip('.')}.") from None


def worker_token(settings: Settings, token: Optional[str] = None, token_file: Optional[str] = None) -> Optional[str]:
    """The token to require: ``token``, else ``token_file``, else the settings' token or token file."""
    from tools.files import read_secret
    from tools.worker import configured_token

    if token:
        return token
    if token_file:
        return read_secret(token_file)
    return configured_token(settings)


def cmd_worker(args: argparse.Namespace) -> int:
    settings = worker_settings(args)
    if args.token:
        print("warning: a --token on the command line can be read by every user of this machine (ps); "
              "prefer --token-file or LOCALEDIT_WORKER_TOKEN.", file=sys.stderr, flush=True)
    token = worker_token(settings, args.token, args.token_file)
    check_bind(args.host, token)
    if args.ray:
        bind(args.host, args.port).close()  # a busy or invalid port: one sentence, before Ray starts
        from tools.worker.serve import run_ray

        return run_ray(settings, host=args.host, port=args.port, token=token, config=args.config,
                       address=args.address, replicas=args.replicas)
    if args.address or args.replicas or args.config:
        raise LocaleditError("--address, --replicas and --config go with --ray.")
    serve_http(settings, args.host, args.port, token)
    return 0


def add_cli(subparsers) -> argparse.ArgumentParser:
    """Add the ``worker`` sub-command to ``subparsers`` (of the ``localedit`` parser)."""
    w = subparsers.add_parser("worker", help="serve the vision models over HTTP (one machine, or Ray Serve)")
    w.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; "
                   "any other needs a token)")
    w.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    w.add_argument("--token", default=None, help="bearer token clients must send (visible in ps: prefer "
                   "--token-file or $LOCALEDIT_WORKER_TOKEN)")
    w.add_argument("--token-file", default=None, help="file whose first line is the token "
                   "(default: $LOCALEDIT_WORKER_TOKEN_FILE)")
    w.add_argument("--models", default=None, help="folder with one sub-folder per model role (LOCALEDIT_MODELS_DIR)")
    w.add_argument("--device", default=None, help="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    w.add_argument("--ray", action="store_true", help="run on Ray Serve: one replica per GPU, autoscaled")
    w.add_argument("--config", default=None, help="with --ray: a Ray Serve config file (e.g. serve_config.yaml), "
                   "deployed with `serve run`")
    w.add_argument("--address", default=None, help="with --ray: join this Ray cluster (HOST:PORT or 'auto'; its "
                   "token from RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH / ~/.ray/auth_token) instead of starting "
                   "a loopback-only Ray on this machine")
    w.add_argument("--replicas", type=int, default=None, help="with --ray: this many replicas (default: "
                   "autoscaled, one per GPU)")
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
