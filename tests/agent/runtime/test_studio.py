"""``langgraph.json``: LangGraph's own tooling (``langgraph dev``, LangGraph Studio) finds, draws and runs the agent.

``langgraph-cli[inmem]`` is not in this project's environment (its ``langgraph-api`` pins
``protobuf<7`` and ``grpcio<1.82``, which Ray Serve's ``grpcio-reflection`` here cannot take; the README
says how to run it beside the project); the test that starts ``langgraph dev`` runs where it is
installed and is skipped elsewhere.
"""

from __future__ import annotations

import json
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
from tests.helpers import REPO



def _spec() -> tuple[str, str]:
    config = json.loads((REPO / "langgraph.json").read_text())
    assert config["dependencies"] == ["."]
    (module, _, name), = [spec.partition(":") for spec in config["graphs"].values()]
    return module, name


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LOCALEDIT_"))}
    return {**env, "PYTHONPATH": str(REPO), "LOCALEDIT_DATA_DIR": str(tmp_path / "data"),
            "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGSMITH_TRACING": "false"}


def test_langgraph_json_names_a_graph_that_builds_and_runs(tmp_path):
    module, name = _spec()
    assert (REPO / (module.replace(".", "/") + ".py")).exists() and name == "graph"
    script = (f"import importlib; g = getattr(importlib.import_module({module!r}), {name!r}); "
              "import json; out = g.invoke({'text': 'hello'}); "
              "print(json.dumps({'nodes': sorted(g.get_graph().nodes), 'reply': out['reply']['text']}))")
    done = subprocess.run([sys.executable, "-c", script], env=_env(tmp_path), cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"understand", "ground", "select", "segment", "edit", "score", "judge", "respond"} <= set(found["nodes"])
    assert found["reply"].startswith("Hello!")
    assert (tmp_path / "data" / "images").is_dir()


def _get(url: str, data: bytes | None = None) -> object:
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.loads(r.read())


@pytest.mark.server
def test_langgraph_dev_serves_and_draws_the_agent(tmp_path):
    cli = shutil.which("langgraph") or str(Path(sys.executable).with_name("langgraph"))
    try:
        import langgraph_api  # noqa: F401
    except ImportError:
        pytest.skip("langgraph-cli[inmem] is not installed here (see the README: it conflicts with Ray's grpcio)")
    if not Path(cli).exists():
        pytest.skip("the langgraph command is not installed")
    port = free_port()
    proc = subprocess.Popen([cli, "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1", "--port", str(port),
                             "--config", str(REPO / "langgraph.json")],  # its .langgraph_api/ state goes to tmp_path
                            cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                assistants = _get(base + "/assistants/search", b"{}")
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "langgraph dev did not come up"
                time.sleep(1)
        (assistant,) = assistants
        drawn = _get(f"{base}/assistants/{assistant['assistant_id']}/graph")
        assert {"understand", "ground", "respond"} <= {n["id"] for n in drawn["nodes"]}
        out = _get(base + "/runs/wait", json.dumps({"assistant_id": assistant["assistant_id"],
                                                    "input": {"text": "hello"}}).encode())
        assert out["reply"]["text"].startswith("Hello!")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
