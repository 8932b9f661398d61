"""The package's shape: one-way layers and no import cycles (docs/architecture.md, "Layers").

Every import counts, also those under ``TYPE_CHECKING`` and inside functions: a cycle hidden in a
function is still a cycle for the reader, and the next refactoring makes it a real one.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path

from bobosync.database import BOBODatabase
from bobosync.store import Store
from bobosync.timebase import UTC

PACKAGE = Path(__file__).resolve().parent.parent / "bobosync"

#: Each module's layer; a module imports only from its own layer or those below.
LAYERS: dict[int, tuple[str, ...]] = {
    0: ("errors", "version", "depcheck", "redaction", "timebase", "logsetup", "stopping", "simulator"),
    1: ("settings", "secret_store"),
    2: ("bobo_csv", "resolution", "desired", "mapping", "counts", "store"),
    3: ("transport", "auth", "client", "database", "filestore", "locking"),
    4: ("scheduling", "reconcile", "writer", "processor"),
    5: ("status", "check", "notify", "metrics", "monitoring", "set_secret", "demo", "trace", "original_api"),
    6: ("cli", "worker", "__main__", "bobo_processor", "athoc_client", "__init__"),
}
LAYER_NAMES = {
    0: "foundation",
    1: "settings",
    2: "inputs and model",
    3: "AtHoc and store",
    4: "pipeline",
    5: "operator's commands",
    6: "entry points",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path, known: Mapping[str, Path]) -> Iterator[str]:
    """The package's modules ``path`` imports, anywhere in the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                if submodule in known:
                    yield submodule
                elif target in known:
                    yield target


def import_graph() -> dict[str, set[str]]:
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: set(imported_modules(path, files)) - {name} for name, path in files.items()}


def find_cycle(graph: Mapping[str, set[str]]) -> list[str]:
    """One import cycle as a path ``[a, b, ..., a]``, or [] when there is none."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str]:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return []
        path.append(node)
        for child in sorted(graph.get(node, ())):
            cycle = visit(child)
            if cycle:
                return cycle
        path.pop()
        done.add(node)
        return []

    for start in sorted(graph):
        cycle = visit(start)
        if cycle:
            return cycle
    return []


def layer_of(module: str) -> int:
    short = module.split(".")[1] if "." in module else "__init__"
    for layer, names in LAYERS.items():
        if short in names:
            return layer
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and to docs/architecture.md")


def test_the_cycle_finder_finds_cycles_hidden_anywhere() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"b"}}) == []
    tree = ast.parse("def f():\n    from .b import x\nif TYPE_CHECKING:\n    from . import c\n")
    targets = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert targets == {"b", None}


def test_no_import_cycle_among_the_packages_modules() -> None:
    graph = import_graph()
    assert len(graph) > 30  # the walk found the package
    cycle = find_cycle(graph)
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_no_module_imports_one_from_a_layer_above() -> None:
    graph = import_graph()
    upward = [
        f"{module} ({LAYER_NAMES[layer_of(module)]}) imports {target} ({LAYER_NAMES[layer_of(target)]})"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if not target.startswith("bobosync.simulator.") and layer_of(target) > layer_of(module)
    ]
    assert not upward, "\n".join(upward)


def test_the_simulator_stands_alone() -> None:
    outside = {
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        if module.startswith("bobosync.simulator")
        for target in targets
        if not target.startswith("bobosync.simulator")
    }
    assert not outside, f"the simulator must not depend on the rest of bobosync: {sorted(outside)}"


def test_the_layers_are_those_of_the_architecture_document() -> None:
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    for layer, names in LAYERS.items():
        line = next((row for row in text.splitlines() if row.startswith(f"| {layer} |")), None)
        assert line is not None, f"docs/architecture.md has no row for layer {layer}"
        for short in names:
            assert f"`{short}`" in line, f"docs/architecture.md: layer {layer} does not list `{short}`"


def test_every_public_exception_is_in_the_one_tree_of_errors_py() -> None:
    outside = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "errors.py" or "simulator" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef) or node.name.startswith("_"):
                continue
            bases = {getattr(base, "id", getattr(base, "attr", "")) for base in node.bases}
            if any(name.endswith(("Error", "Exception")) or name in {"BoboSyncError", "ValueError"} for name in bases):
                outside.append(f"{module_name(path)}.{node.name}")
    assert not outside, f"exceptions outside bobosync/errors.py: {outside}"


def test_every_module_names_its_logger_log() -> None:
    odd = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:  # module level only
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Call)
                and getattr(node.value.func, "attr", "") == "getLogger"
            ):
                names = [getattr(target, "id", "?") for target in node.targets]
                if names != ["log"]:
                    odd.append(f"{module_name(path)}: {', '.join(names)}")
    assert not odd, f"module-level loggers are called `log`: {odd}"


def test_the_simulator_imports_without_test_only_packages() -> None:
    import subprocess
    import sys

    test_only = ("pytest", "trustme", "hypothesis", "aiosmtpd", "prometheus_client", "cryptography")  # last: --tls only
    code = (
        "import sys, bobosync.simulator, bobosync.simulator.__main__\n"
        f"print(','.join(name for name in {test_only!r} if name in sys.modules))"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert found.stdout.strip() == "", f"importing the simulator pulled in: {found.stdout.strip()}"


def test_the_sqlite_database_is_a_store(tmp_path: Path) -> None:
    """mypy holds BOBODatabase to the Protocols (this assignment fails type-checking when a
    method's signature drifts); the pipeline's parts are typed against the Protocols alone."""
    store: Store = BOBODatabase(tmp_path / "bobo.db")
    try:
        now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
        with store.transaction():
            store.record_sync("success", now, 3)
            store.add_pending_move("a.csv", "processed_files/a.csv", "0" * 64, now)
        state = store.get_sync_state()
        assert state is not None and state.records_synced == 3
        assert [move.src for move in store.pending_moves()] == ["a.csv"]
    finally:
        store.close()
