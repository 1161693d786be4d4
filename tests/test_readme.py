"""The README stays true: its set-up commands are what CI runs, and its diagram is the real graph."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_first_lines_are_the_two_set_up_commands():
    run, test = readme_commands()[:2]
    assert "localedit edit" in run and "pip install -e . -c constraints.txt" in run
    assert "pytest" in test and 'pip install -e ".[dev]" -c constraints.txt' in test


def test_ci_runs_the_readme_test_command_exactly():
    test_command = readme_commands()[1]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci


def test_readme_diagram_is_the_live_graph():
    from agent.graph import mermaid

    assert mermaid().strip() in (ROOT / "README.md").read_text()
