"""The package layout: no import circles, and the agent side never pulls in torch.

Imports are read from the source (module level and inside functions alike), so a lazy import that
closes a circle counts too: that is how ``tools.remote`` <-> ``tools.worker`` and ``tools.serve`` <->
``tools.server`` once hid.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "tools", "chat_ui", "bench")


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = path
    return mods


def import_graph() -> dict[str, set[str]]:
    """``{module: {project modules it imports}}``, every import statement counted."""
    mods = _modules()

    def resolve(name: str):
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps.update(filter(None, (resolve(a.name) for a in node.names)))
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps.update(filter(None, (resolve(f"{node.module}.{a.name}") or resolve(node.module)
                                          for a in node.names)))
        graph[name] = deps - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while (w := stack.pop()) != v:
                comp.append(w)
            if comp:
                found.append(sorted([v, *comp]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    assert cycles(import_graph()) == []


def test_worker_service_is_one_package():
    graph = import_graph()
    for gone in ("tools.remote", "tools.server", "tools.serve"):
        assert gone not in graph
    for part in ("interface", "local", "wire", "server", "client", "serve", "cli"):
        assert f"tools.worker.{part}" in graph
    # the client and the server share the wire format, not each other
    assert "tools.worker.server" not in graph["tools.worker.client"]
    assert "tools.worker.client" not in graph["tools.worker.server"]


def test_agent_and_worker_interface_do_not_import_torch():
    code = ("import sys, agent.conversation.graph, agent.runtime.session, tools.worker, tools.worker.client; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


LAYERS_BELOW = {"tools": ("agent", "bench", "chat_ui"), "agent": ("bench", "chat_ui")}
"""Imports run downward: a package never imports the packages listed for it (``bench`` and ``chat_ui``
are on top; ``agent``'s CLI finds their sub-commands through the ``localedit.commands`` entry points)."""


AGENT_LAYERS = ("agent.language", "agent.conversation", "agent.runtime")
"""The agent's layers, lowest first: each imports only the ones before it, and the surfaces on top
(``agent.cli``, ``agent.chat_cli``, ``agent.usage``, ``agent.api``) import any of them."""

AGENT_LEAVES = ("agent.runtime.store", "agent.runtime.locks")
"""Modules of a higher layer that import nothing from ``agent``, so any layer may use them."""


def _package(module: str) -> str:
    return module.split(".")[0]


def _agent_layer(module: str) -> int:
    """The index of ``module``'s layer in :data:`AGENT_LAYERS`, or the top for the surfaces."""
    for i, layer in enumerate(AGENT_LAYERS):
        if module == layer or module.startswith(layer + "."):
            return i
    return len(AGENT_LAYERS)


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """``(importer, imported)`` pairs that break :data:`LAYERS_BELOW`, and vision modules (``tools``
    outside ``tools.worker``) that import the worker package, which imports them."""
    bad = []
    for module, deps in graph.items():
        for dep in deps:
            if _package(dep) in LAYERS_BELOW.get(_package(module), ()):
                bad.append((module, dep))
            elif (_package(module) == "tools" and not module.startswith("tools.worker")
                  and dep.startswith("tools.worker")):
                bad.append((module, dep))
            elif (_package(module) == _package(dep) == "agent" and dep not in AGENT_LEAVES
                  and _agent_layer(dep) > _agent_layer(module)):
                bad.append((module, dep))
    return sorted(bad)


def test_the_layer_check_fires():
    assert upward_imports({"agent.cli": {"bench.evaluate", "tools.config"}, "tools.region": {"tools.worker.interface"},
                           "tools.config": {"agent.plan"}, "bench.evaluate": {"agent.pipeline", "chat_ui"},
                           "tools.worker.local": {"tools.edit"}}) == [
        ("agent.cli", "bench.evaluate"), ("tools.config", "agent.plan"), ("tools.region", "tools.worker.interface")]
    # inside the agent: language < conversation < runtime < the surfaces; the store is a leaf anyone may use
    assert upward_imports({"agent.language.llm": {"agent.conversation.select", "agent.runtime.store"},
                           "agent.conversation.graph": {"agent.runtime.session", "agent.language.plan"},
                           "agent.runtime.session": {"agent.conversation.graph", "agent.cli"},
                           "agent.api.cli": {"agent.runtime.session"}}) == [
        ("agent.conversation.graph", "agent.runtime.session"), ("agent.language.llm", "agent.conversation.select"),
        ("agent.runtime.session", "agent.cli")]


def leaf_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """``(leaf, imported)`` for each module of the agent that a leaf of :data:`AGENT_LEAVES` imports."""
    return sorted((leaf, dep) for leaf in AGENT_LEAVES for dep in graph.get(leaf, ()) if _package(dep) == "agent")


def test_the_leaves_import_nothing_from_the_agent():
    assert leaf_imports({"agent.runtime.store": {"tools.images", "agent.runtime.session"},
                         "agent.runtime.locks": {"tools.files"}}) == [("agent.runtime.store", "agent.runtime.session")]
    assert leaf_imports(import_graph()) == []


def test_imports_run_downward():
    assert upward_imports(import_graph()) == []


def test_the_cli_finds_the_subcommands_it_does_not_import():
    from agent.cli import build_parser, command_registrations

    assert {name for name, _ in command_registrations()} == {"chat", "eval", "worker", "api"}
    commands = build_parser()._subparsers._group_actions[0].choices
    assert {"edit", "models", "parse", "chat-cli", "chat", "eval", "worker", "api", "mcp"} <= set(commands)
