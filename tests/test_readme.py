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
    from agent.conversation.graph import mermaid

    assert mermaid().strip() in (ROOT / "README.md").read_text()


LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def links(markdown: str) -> list[str]:
    """The targets of the Markdown links and images in ``markdown`` (code spans and blocks left out)."""
    text = re.sub(r"```.*?```", "", markdown, flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return LINK.findall(text)


def leaving(page: Path, text: str | None = None) -> list[str]:
    """The links of ``page`` (its ``text``, read from it by default) that leave the repository or
    point at nothing in it."""
    bad = []
    for target in links(page.read_text() if text is None else text):
        path = target.split("#", 1)[0]
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("//"):
            bad.append(target)  # http:, https:, file:, mailto: ...
        elif path:
            resolved = (page.parent / path).resolve()
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                bad.append(target)
    return bad


def test_the_readme_is_short_and_has_its_parts():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 300
    for part in ("## What it is", "## Quickstart", "## Architecture", "## Documentation", "```mermaid",
                 "| package |", 'pytest -q -m "not slow and not browser and not server"'):
        assert part in text, part
    pictures = [t for t in links(text) if t.endswith(".png")]
    assert pictures and all((ROOT / t).is_file() for t in pictures)


def test_no_link_leaves_the_repository():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert {page.name: bad for page in pages if (bad := leaving(page))} == {}


def test_the_link_check_fires():
    text = ("[design](../../shared/DESIGN.md) [web](https://example.org) [ok](figures.md) "
            "![pic](chat-phone.png) [gone](nothing.md) `[code](https://x)` [anchor](#top)")
    assert leaving(ROOT / "docs" / "x.md", text) == ["../../shared/DESIGN.md", "https://example.org", "nothing.md"]

