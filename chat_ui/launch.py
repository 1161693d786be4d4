"""``localedit chat``: start the Chainlit chat UI and print its address.

    localedit chat                                  # http://127.0.0.1:8000, no login (this machine only)
    localedit chat --models ./tiny-models --port 8765 --data-dir /tmp/le
    LOCALEDIT_CHAT_PASSWORD=... localedit chat --host 0.0.0.0   # other machines: a password is required

Chainlit runs as a child process (``python -m chainlit run chat_ui/app.py --headless``) with its
app root in ``<data dir>/chainlit`` (:func:`prepare_app_root`): this package's ``chainlit.toml`` is
written there as ``.chainlit/config.toml`` (with the allowed origins), ``chainlit.md`` as the
readme, ``public/`` (the PhotoPicker element, fonts, CSS and script: nothing is loaded from the
internet) and the English texts (``translations/en-US.json``, Chainlit's with our footer), so the
files Chainlit writes (uploads) stay out of the source tree and an installed package carries its
config. The signing secret of the login cookie is made once and kept, owner-only, in
``<data dir>/chainlit/auth_secret``. ``--models``, ``--data-dir`` and ``--device`` reach the app as
``LOCALEDIT_*`` variables.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from tools.http_guard import bind

HERE = Path(__file__).resolve().parent
APP_FILE = HERE / "app.py"
REPO_ROOT = HERE.parent
START_TIMEOUT = 180.0  # seconds: the first start imports torch, transformers and diffusers


def add_cli(subparsers) -> argparse.ArgumentParser:
    """Add the ``chat`` sub-command to ``localedit``'s sub-parsers."""
    c = subparsers.add_parser("chat", help="the chat UI in your browser (Chainlit); prints its address")
    c.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    c.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    c.add_argument("--models", help="folder of local models (as LOCALEDIT_MODELS_DIR)")
    c.add_argument("--data-dir", help="where conversations and images are kept (as LOCALEDIT_DATA_DIR)")
    c.add_argument("--device", help="cpu, cuda, cuda:1 (default: auto)")
    c.set_defaults(func=cmd_chat)
    return c


def cmd_chat(args: argparse.Namespace) -> int:
    """Run the chat server until it stops (Ctrl-C stops it)."""
    from tools.config import Settings
    from tools.types import LocaleditError

    overrides = {k: v for k, v in {"models_dir": args.models, "data_dir": args.data_dir,
                                   "device": args.device}.items() if v is not None}
    settings = Settings(**overrides)
    if args.models and not Path(args.models).is_dir():
        raise LocaleditError(f"No models folder at {args.models}; make tiny ones with "
                             f"`localedit models make-tiny {args.models}` or download with `localedit models download`.")
    from chat_ui.access import check_listen

    refusal = check_listen(args.host, settings)
    if refusal:
        raise LocaleditError(refusal)
    bind(args.host, args.port).close()  # a busy or invalid port: one sentence, before Chainlit starts
    env = {"LOCALEDIT_DATA_DIR": str(Path(settings.data_dir).resolve())}
    if args.models:
        env["LOCALEDIT_MODELS_DIR"] = str(Path(args.models).resolve())
    if args.device:
        env["LOCALEDIT_DEVICE"] = args.device
    proc = start(args.host, args.port, Path(settings.data_dir), env=env, settings=settings)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the child
    try:
        url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::', '') else args.host}:{args.port}"
        if not wait_until_up(args.host, args.port, proc, START_TIMEOUT):
            code = proc.poll()
            raise LocaleditError(f"The chat server did not start (exit code {code}); see the messages above."
                                 if code is not None else f"The chat server did not answer within {START_TIMEOUT:.0f} s.")
        print(f"localedit chat is running at {url}  (Ctrl-C stops it)", flush=True)
        return proc.wait()
    finally:
        stop(proc)


FOOTER_OFFLINE = "Edits run on this machine; instructions are read by the built-in parser (no LLM)."
FOOTER_LLM = "Edits run on this machine; an LLM reads your instructions and can misread them: check the result."


def prepare_app_root(data_dir: Path, settings=None) -> Path:
    """``<data_dir>/chainlit``: config (origins from ``settings``), readme, public files, English texts."""
    from tools.config import Settings

    settings = settings or Settings()
    root = Path(data_dir).resolve() / "chainlit"
    (root / ".chainlit" / "translations").mkdir(parents=True, exist_ok=True)
    origins = json.dumps(list(settings.chat_origins))
    config = (HERE / "chainlit.toml").read_text(encoding="utf-8").replace('allow_origins = ["*"]',
                                                                           f"allow_origins = {origins}")
    _write(root / ".chainlit" / "config.toml", config)
    shutil.copyfile(HERE / "chainlit.md", root / "chainlit.md")
    shutil.copytree(HERE / "public", root / "public", dirs_exist_ok=True)
    _write(root / ".chainlit" / "translations" / "en-US.json", json.dumps(texts(settings), indent=1))
    return root


NEW_CHAT_DIALOG = {"title": "Start a new chat?",
                   "description": "This chat stays in the sidebar under its name: you can reopen it there and carry "
                                  "on. The new chat starts without a photo."}
"""The New chat confirmation (Chainlit's says the chat will be cleared; it is kept)."""


def texts(settings) -> dict:
    """Chainlit's English texts with localedit's footer (no "LLMs can make mistakes" without an LLM)
    and step headers that are just the step's name (Chainlit prefixes "Used"), and a New chat
    confirmation that says the chat is kept."""
    import chainlit

    base = json.loads((Path(chainlit.__file__).parent / "translations" / "en-US.json").read_text(encoding="utf-8"))
    # the same rule as agent.language.llm_client.make_llm: a model plus a server or a key (LOCALEDIT_LLM_* or the
    # OpenAI fallbacks, from the environment or .env: the settings hold them)
    llm = bool(settings.llm_model and (settings.llm_base_url or settings.llm_api_key))
    base["chat"]["watermark"] = FOOTER_LLM if llm else FOOTER_OFFLINE
    base["chat"]["messages"]["status"].update(using="", used="")
    base["common"]["actions"]["reset"] = "Undo changes"
    base["navigation"]["newChat"]["dialog"].update(NEW_CHAT_DIALOG)
    return base


def auth_secret(root: Path) -> str:
    """The secret that signs login cookies: made once, kept owner-only beside the app root."""
    path = Path(root) / "auth_secret"
    if not path.is_file() or len(path.read_text().strip()) < 32:
        _write(path, secrets.token_urlsafe(48))
    os.chmod(path, 0o600)
    return path.read_text().strip()


def settings_in(env: dict) -> "Settings":  # noqa: F821 - tools.config is imported late (startup time)
    """The ``Settings`` a process with environment ``env`` reads."""
    from tools.config import Settings

    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _write(path: Path, text: str) -> None:
    """Write ``text`` all or nothing (a temporary file, then a rename)."""
    part = path.with_name(path.name + ".part")
    part.write_text(text, encoding="utf-8")
    os.replace(part, path)


def chainlit_command(host: str, port: int, app_file: Path = APP_FILE) -> list[str]:
    return [sys.executable, "-m", "chainlit", "run", str(app_file), "--headless", "--host", host, "--port", str(port)]


def start(host: str, port: int, data_dir: Path, *, app_file: Path = APP_FILE, env: Optional[dict] = None,
          settings=None, **popen) -> subprocess.Popen:
    """Start Chainlit on ``host:port`` as a child process (not waiting for it to answer).

    ``env`` is added to this process's environment; a None value removes that variable.
    ``settings`` (default: from that environment) decide the allowed origins and the footer.
    """
    if importlib.util.find_spec("chainlit") is None:  # not imported: importing it writes files in the cwd
        from tools.types import LocaleditError

        raise LocaleditError("The chat UI needs Chainlit: pip install chainlit")
    child = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}
    root = prepare_app_root(data_dir, settings or settings_in(child))
    child["CHAINLIT_APP_ROOT"] = str(root)
    child["CHAINLIT_AUTH_SECRET"] = auth_secret(root)
    child["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), child.get("PYTHONPATH")) if p)
    child.setdefault("TOKENIZERS_PARALLELISM", "false")
    return subprocess.Popen(chainlit_command(host, port, app_file), env=child, **popen)


def wait_until_up(host: str, port: int, proc: subprocess.Popen, timeout: float) -> bool:
    """True once ``host:port`` accepts connections; False if ``proc`` exits or ``timeout`` passes."""
    target = "127.0.0.1" if host in ("", "0.0.0.0") else host
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection((target, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.25)
    return False


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """Terminate ``proc`` (then kill it if it lingers)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m chat_ui.launch [--port ...]``: the same as ``localedit chat``."""
    parser = argparse.ArgumentParser(prog="localedit")
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["chat", *(sys.argv[1:] if argv is None else argv)])
    from tools.types import LocaleditError

    try:
        return args.func(args)
    except LocaleditError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
