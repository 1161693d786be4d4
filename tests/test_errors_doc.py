"""docs/errors.md's promises, run for real: each row of its table through the ``localedit`` command
line (a subprocess, tiny models, no network): the exit code it lists, one ``error:`` line that says
what the row says, no traceback, no ``*.part`` file (issue 23)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import scene

EXE = Path(sys.executable).parent / "localedit"
DOC = Path(__file__).resolve().parent.parent / "docs" / "errors.md"


def documented_cases() -> list[tuple[str, str, int, str]]:
    """``(case, command, exit code, text)`` for each row of the table whose command is in backticks."""
    rows = []
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.replace("\\|", "\0").strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1].startswith("`") and cells[2].isdigit():
            rows.append((cells[0], cells[1].strip("`").replace("\0", "|"), int(cells[2]), cells[3].strip("`")))
    return rows


CASES = documented_cases()


def test_the_document_has_its_cases():
    """A table the parser above cannot read would make the test below run nothing."""
    assert len(CASES) >= 15 and {code for _, _, code, _ in CASES} >= {2, 3, 4, 5, 6}


DRIVER = """
import json, os, sys
import agent.cli, torch, transformers, diffusers  # imported once; each case runs in a fork of this process
results = []
for case in json.loads(sys.stdin.read()):
    out, err = case["dir"] + "/stdout", case["dir"] + "/stderr"
    pid = os.fork()
    if pid == 0:
        os.chdir(case["dir"])
        os.environ.clear()
        os.environ.update(case["env"])
        fd = os.open("/dev/null", os.O_RDONLY)
        os.dup2(fd, 0)
        os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT, 0o600), 1)
        os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT, 0o600), 2)
        sys.argv = ["localedit", *case["argv"]]
        code = agent.cli.main(case["argv"])
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(code)
    results.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
print(json.dumps(results))
"""


@pytest.mark.slow
@pytest.mark.server
def test_each_documented_failure(tiny_models_dir, tmp_path):
    """Every row: the exit code, one ``error:`` line (the last on stderr) saying the row's text, no
    traceback, no ``*.part`` file. Each case is ``localedit``'s ``main`` in a process of its own (a
    fork of one that imported the libraries once: 16 fresh interpreters took 6 minutes)."""
    import json

    cases = []
    for i, (case, command, code, says) in enumerate(CASES):
        folder = tmp_path / f"case{i}"
        folder.mkdir()
        scene((160, 120)).save(folder / "photo.png")
        (folder / "text.png").write_text("not a picture\n")
        (folder / "broken").mkdir()
        (folder / "broken" / "conversations.sqlite").write_bytes(b"\x00garbage" * 1000)
        env = {**os.environ, "HF_HUB_OFFLINE": "0", "LOCALEDIT_DATA_DIR": str(folder / "data"),
               "LOCALEDIT_DEVICE": "cpu", "LOCALEDIT_MAX_SIDE": "64", "LOCALEDIT_STEPS": "1", "OMP_NUM_THREADS": "1",
               "OPENAI_API_KEY": "", "OPENAI_BASE_URL": ""}
        env.pop("LOCALEDIT_MODELS_DIR", None)
        words = [w.replace("TINY", str(tiny_models_dir)).replace("BROKEN", str(folder / "broken"))
                 .replace("LONG", "a" * 100_000) for w in shlex.split(command)]
        while re.fullmatch(r"[A-Z_]+=.*", words[0]):  # VAR=value before the command, as a shell takes it
            name, _, value = words.pop(0).partition("=")
            env[name] = value
        assert words[0] == "localedit", command
        cases.append({"dir": str(folder), "env": env, "argv": words[1:]})
    ran = subprocess.run([sys.executable, "-c", DRIVER], input=json.dumps(cases), capture_output=True, text=True,
                         timeout=600, env={**os.environ, "PYTHONPATH": str(DOC.parent.parent)})
    assert ran.returncode == 0, ran.stderr
    failed = []
    for (case, command, code, says), run, rc in zip(CASES, cases, json.loads(ran.stdout.splitlines()[-1])):
        stderr = Path(run["dir"], "stderr").read_text()
        stdout = Path(run["dir"], "stdout").read_text()
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        if (rc != code or len(errors) != 1 or stderr.splitlines()[-1] != errors[0] or says not in errors[0]
                or "Traceback" in stderr + stdout or list(Path(run["dir"]).rglob("*.part"))):
            failed.append(f"{case}: exit {rc} (documented {code}); stderr: {stderr!r}")
    assert not failed, "\n".join(failed)
