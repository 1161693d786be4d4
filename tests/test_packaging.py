"""A wheel built from the repository holds the prompts (``agent/language/prompts/*.txt``) and the public model
configurations (``tools/public_configs/*.json``), and the LLM path works from a non-editable install
of it: the prompts are read with ``importlib.resources``, not from beside a source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.server]
ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "tools", "chat_ui", "bench")

LLM_TURN = """
import sys
from pathlib import Path
import agent, agent.language.prompts
site = Path(sys.argv[1]).resolve()
assert Path(agent.__file__).resolve().is_relative_to(site), agent.__file__  # the installed copy, not the tree
from agent.language.llm import Understander
from agent.language.parser import ParseContext
from tests.helpers.llm import ScriptedChat, call
from tools.config import Settings
model = ScriptedChat(script=[call("edit_region", action="attribute", target="cat", new_value="red",
                                  instruction="make the cat red")])
out = Understander(model, settings=Settings(_env_file=None)).understand("make the cat red", ParseContext(caption="a cat"))
system = model.received[0][0].content
assert out.path.startswith("llm"), out.path
assert out.result.target == "cat" and out.result.new_value == "red", out.result
assert "a cat" in system and "{{" not in system  # the system prompt, its slots filled
print("ok", out.path)
"""


def source_copy(folder: Path) -> Path:
    """The files a build reads (pyproject, README, the packages), without caches or build leftovers."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, folder / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, folder / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "node_modules", ".files"))
    return folder


def test_the_wheel_holds_the_prompts_and_configs_and_the_llm_path_runs_from_an_install(tmp_path):
    (tmp_path / "src").mkdir()
    source = source_copy(tmp_path / "src")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("localedit-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    prompts = sorted(p.name for p in (ROOT / "agent" / "language" / "prompts").glob("*.txt"))
    configs = sorted(p.name for p in (ROOT / "tools" / "public_configs").glob("*.json"))
    assert {"system.txt", "examples.txt", "repair.txt"} <= set(prompts)
    assert configs and all(f"tools/public_configs/{name}" in names for name in configs)
    assert all(f"agent/language/prompts/{name}" in names for name in prompts), sorted(n for n in names if "prompt" in n)

    site = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "-q",
                                "--target", str(site), str(wheel)], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-2000:]
    # the installed copy first on the path; the repository only for the test's scripted chat model
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    turn = subprocess.run([sys.executable, "-c", LLM_TURN, str(site)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env=env)
    assert turn.returncode == 0 and turn.stdout.startswith("ok"), turn.stderr[-3000:]


def test_without_the_prompt_files_the_installed_llm_path_fails(tmp_path):
    """The check above can fail: the same install with its prompt files taken out does not run."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "agent", site / "agent", ignore=shutil.ignore_patterns("__pycache__", "*.txt"))
    for package in ("tools", "chat_ui", "bench"):
        (site / package).symlink_to(ROOT / package)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    turn = subprocess.run([sys.executable, "-c", LLM_TURN, str(site)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env=env)
    assert turn.returncode != 0 and "system.txt" in turn.stderr, turn.stdout + turn.stderr[-2000:]
