"""The test suite's own rules: no test module imports another (shared helpers live in ``conftest.py``
and ``tests/helpers/``), every module below ``tests/`` is a test module, a conftest, a package's
``__init__`` or a helper in ``tests/helpers/``, every folder is a package (so two test modules of one
name in two folders do not collide), and every marker a test uses is registered in ``pyproject.toml``,
so that ``pytest -m "not slow and not browser and not server"`` (docs/testing.md) selects what it says.
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


def test_modules() -> list[Path]:
    """Every test module below ``tests/``, in every folder."""
    return sorted(TESTS.rglob("test_*.py"))


test_modules.__test__ = False  # a helper named for what it lists, not a test


def misplaced(paths: list[Path]) -> list[str]:
    """The modules of ``paths`` (below ``tests/``) that are neither a test module, a conftest, a
    package's ``__init__`` nor a helper in ``tests/helpers/``, as paths relative to ``tests/``."""
    allowed = {"conftest.py", "__init__.py"}
    return sorted(str(p.relative_to(TESTS)) for p in paths if not (
        p.name.startswith("test_") or p.name in allowed or p.relative_to(TESTS).parts[0] == "helpers"))


def same_names(paths: list[Path]) -> list[str]:
    """The file names that more than one of ``paths`` has."""
    names = [p.name for p in paths]
    return sorted({n for n in names if names.count(n) > 1})


def folders_without_init(root: Path) -> list[str]:
    """The folders below ``root`` (itself included) that hold a Python module but no ``__init__.py``,
    relative to ``root``."""
    folders = {p.parent for p in root.rglob("*.py") if "__pycache__" not in p.parts}
    return sorted(str(f.relative_to(root)) for f in folders if not (f / "__init__.py").is_file())


def test_module_imports(source: str) -> set[str]:
    """The ``tests.test_*`` / ``test_*`` modules that ``source`` imports (any depth, any form)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        found.update(n for n in names if re.fullmatch(r"(tests(\.\w+)*\.)?test_\w+", n))
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
    assert test_module_imports("from tests.tools.worker.test_soak import x\n") == {"tests.tools.worker.test_soak"}
    assert test_module_imports("from tests.agent import test_cli\n") == {"tests.agent.test_cli"}
    assert test_module_imports("from .test_cli import x\n") == {"test_cli"}
    assert test_module_imports("from tests.helpers.worker import TOKEN\nfrom tests.helpers.scenes import CATS\n") == set()


def test_no_test_module_imports_another():
    offenders = {str(path.relative_to(TESTS)): sorted(imports) for path in test_modules()
                 if (imports := test_module_imports(path.read_text()))}
    assert offenders == {}, f"move what they share into tests/conftest.py or tests/helpers/: {offenders}"


def test_the_four_markers_are_registered_and_every_used_marker_is():
    registered = registered_markers()
    assert {"slow", "browser", "server", "gpu"} <= registered
    assert markers_used("@pytest.mark.slow\npytestmark = [pytest.mark.browser]") == {"slow", "browser"}
    typo = "@pytest.mark." + "sloow\n"  # split, so this file does not use it
    assert markers_used(typo) - registered - PYTEST_OWN == {"sloow"}  # a typo is caught
    unregistered = {str(path.relative_to(TESTS)): sorted(markers_used(path.read_text()) - registered - PYTEST_OWN)
                    for path in test_modules()}
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


def test_the_suite_mirrors_the_packages():
    assert {"agent/language", "agent/conversation", "agent/runtime", "tools/worker", "chat_ui", "bench"} <= {
        str(p.parent.relative_to(TESTS)) for p in test_modules()}
    assert TESTS / "tools" / "editors" / "test_edit.py" in test_modules()


PROJECT_WIDE = {"test_errors_doc.py", "test_layout.py", "test_packaging.py", "test_readme.py",
                "test_settings_doc.py", "test_smoke.py", "test_suite_rules.py"}
"""The only test modules at the top of ``tests/``: rules about the whole project (docs/testing.md)."""


def flat(paths: list[Path]) -> list[str]:
    """The test modules of ``paths`` at the top of ``tests/`` that are not project-wide rules."""
    return sorted(p.name for p in paths if p.parent == TESTS and p.name not in PROJECT_WIDE)


def test_a_new_test_module_goes_into_its_package_folder():
    assert flat([TESTS / "test_layout.py", TESTS / "test_stopping.py", TESTS / "tools" / "test_x.py"]) == [
        "test_stopping.py"]
    assert flat(test_modules()) == [], "put it in the folder of the package it tests (tests/tools/, ...)"


def test_no_two_test_modules_share_a_name():
    assert same_names([TESTS / "tools" / "test_x.py", TESTS / "agent" / "test_x.py", TESTS / "test_y.py"]) == ["test_x.py"]
    assert same_names(test_modules()) == [], "name each test module for what it tests, once"


def test_every_module_is_a_test_a_conftest_or_a_helper():
    assert misplaced([TESTS / "scenes.py", TESTS / "tools" / "test_x.py", TESTS / "helpers" / "scenes.py",
                      TESTS / "agent" / "conftest.py", TESTS / "agent" / "__init__.py"]) == ["scenes.py"]
    assert misplaced(sorted(TESTS.rglob("*.py"))) == [], "move shared code into tests/helpers/"


def test_every_folder_is_a_package(tmp_path):
    for folder in ("a", "a/b", "c"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "test_x.py").write_text("")
    for folder in (".", "a", "c"):
        (tmp_path / folder / "__init__.py").write_text("")
    assert folders_without_init(tmp_path) == ["a/b"]  # two test_x modules would collide
    assert folders_without_init(TESTS) == [], "add an __init__.py to each folder of tests/"
