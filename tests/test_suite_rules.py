"""The test suite's own rules: no test module imports another (shared helpers live in ``conftest.py``
and ``tests/helpers/``), and every marker a test uses is registered in ``pyproject.toml``, so that
``pytest -m "not slow and not browser and not server"`` (docs/testing.md) selects what it says.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
PYTEST_OWN = {"parametrize", "skip", "skipif", "xfail", "usefixtures", "filterwarnings"}


def test_module_imports(source: str) -> set[str]:
    """The ``tests.test_*`` / ``test_*`` modules that ``source`` imports (any depth, any form)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        found.update(n for n in names if re.fullmatch(r"(tests\.)?test_\w+", n))
    return found


test_module_imports.__test__ = False  # a helper named for what it finds, not a test


def markers_used(source: str) -> set[str]:
    """Every marker name ``pytest.mark.<name>`` in ``source`` (decorators and ``pytestmark`` alike)."""
    return set(re.findall(r"pytest\.mark\.(\w+)", source))


def registered_markers() -> set[str]:
    """The marker names of ``[tool.pytest.ini_options] markers`` in pyproject.toml."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {line.split(":")[0].strip() for line in config["tool"]["pytest"]["ini_options"]["markers"]}


def test_the_import_check_sees_every_form():
    assert test_module_imports("from tests.test_llm import ScriptedChat\n") == {"tests.test_llm"}
    assert test_module_imports("def f():\n    import tests.test_cli\n") == {"tests.test_cli"}
    assert test_module_imports("from tests import test_soak\n") == {"tests.test_soak"}
    assert test_module_imports("from tests.helpers.worker import TOKEN\nfrom tests.scenes import CATS\n") == set()


def test_no_test_module_imports_another():
    offenders = {path.name: sorted(imports) for path in sorted(TESTS.glob("test_*.py"))
                 if (imports := test_module_imports(path.read_text()))}
    assert offenders == {}, f"move what they share into tests/conftest.py or tests/helpers/: {offenders}"


def test_the_four_markers_are_registered_and_every_used_marker_is():
    registered = registered_markers()
    assert {"slow", "browser", "server", "gpu"} <= registered
    assert markers_used("@pytest.mark.slow\npytestmark = [pytest.mark.browser]") == {"slow", "browser"}
    typo = "@pytest.mark." + "sloow\n"  # split, so this file does not use it
    assert markers_used(typo) - registered - PYTEST_OWN == {"sloow"}  # a typo is caught
    unregistered = {path.name: sorted(markers_used(path.read_text()) - registered - PYTEST_OWN)
                    for path in sorted(TESTS.glob("test_*.py"))}
    assert {name: marks for name, marks in unregistered.items() if marks} == {}


def test_every_test_listed_as_slow_exists():
    from tests.conftest import SLOW_FIXTURES, SLOW_TESTS

    def defined(path: str, name: str) -> bool:
        source = ROOT / path
        return source.is_file() and re.search(rf"^(async )?def {name}\(", source.read_text(), re.M) is not None

    assert defined("tests/test_smoke.py", "test_tiny_edit_at_the_default_size")
    assert not defined("tests/test_smoke.py", "test_that_was_renamed")  # what a stale entry looks like
    missing = [n for n in SLOW_TESTS if not defined(*n.split("::"))]
    missing += [f"{path} fixture {name}" for path, name in SLOW_FIXTURES if not defined(path, name)]
    assert missing == [], "rename or remove them in tests/conftest.py"
