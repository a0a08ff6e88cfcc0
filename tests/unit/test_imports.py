"""The floor plan holds: the core and the engine load no I/O library, and no import runs up the house.

Layers, top to bottom: the commands (``cli``) -> the wiring (``app``, ``jobs``) -> the engine and the
adapters (``engine``, ``http``, ``ledger``, the sinks, ``inbound.export``) -> the core (``model``, the
mappers, ``config``, ``errors`` ...). A module imports its own layer or a lower one. The engine, besides,
reaches the ledger and the sinks only through the protocols it declares: it imports no adapter.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "sync"

# importable without SQLAlchemy, aiohttp or the Segment library: every module under each prefix
PURE = (
    "sync.model", "sync.people", "sync.wire", "sync.errors", "sync.config", "sync.masking", "sync.mapping",
    "sync.outbound", "sync.inbound.mapper", "sync.inbound.people", "sync.segment.spec",
    "sync.segment.semantics", "sync.segment.timestamps", "sync.iterable.bulk", "sync.iterable.identifiers",
    "sync.iterable.field_types", "sync.iterable.api", "sync.engine", "sync.engine.gate", "sync.engine.settlement",
    "sync.ledger.decisions", "sync.ledger.memory",
)
IO_LIBRARIES = ("sqlalchemy", "aiohttp", "segment")

# the longest prefix decides a module's layer; a module that no prefix names fails until it is placed
LAYERS = {
    "sync.cli": 4, "sync.__main__": 4, "sync.guard_commands": 4,
    "sync.app": 3, "sync.jobs": 3, "sync.guards": 3,
    "sync.engine": 2, "sync.http": 2, "sync.ledger": 2, "sync.iterable": 2, "sync.segment": 2,
    "sync.inbound.export": 2, "sync.inbound.drift": 2, "sync.replay": 2, "sync.requeue": 2,
    "sync.model": 1, "sync.errors": 1, "sync.config": 1, "sync.logs": 1, "sync.metrics": 1,
    "sync.people": 1, "sync.wire": 1, "sync.masking": 1, "sync.mapping": 1, "sync.outbound": 1,
    "sync.inbound": 1, "sync.segment.spec": 1, "sync.segment.semantics": 1, "sync.segment.timestamps": 1,
    "sync.iterable.identifiers": 1, "sync.iterable.field_types": 1, "sync.iterable.bulk": 1,
    "sync.iterable.api": 1,
}
ADAPTERS = (
    "sync.http", "sync.ledger", "sync.iterable.client", "sync.iterable.sink", "sync.iterable.learning",
    "sync.segment.sink", "sync.inbound.export", "sync.inbound.drift", "sync.replay", "sync.requeue",
)
# the package's face, and the stand-ins that the demo and the tests use
UNLAYERED = ("sync.sandbox",)


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def under(name: str, prefixes: tuple[str, ...] | dict[str, int]) -> str | None:
    matches = [prefix for prefix in prefixes if name == prefix or name.startswith(prefix + ".")]
    return max(matches, key=len) if matches else None


def layer(name: str) -> int | None:
    prefix = under(name, LAYERS)
    return None if prefix is None else LAYERS[prefix]


def imported(name: str) -> set[str]:
    """The sync modules one module imports, at its top or inside a function."""
    path = PACKAGE.parent / Path(*name.split(".")).with_suffix(".py")
    path = path if path.is_file() else path.with_suffix("") / "__init__.py"
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    known = modules()
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base]).strip(".")
            # ``from sync.x import y`` imports the module sync.x.y if there is one, else a name of sync.x
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}
    return found & set(known)


def test_the_core_and_the_engine_load_no_io_library() -> None:
    pure = sorted(name for name in modules() if under(name, PURE))
    script = (f"import importlib, json, sys\nfor name in {pure!r}:\n    importlib.import_module(name)\n"
              "print(json.dumps(sorted(sys.modules)))")
    ran = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    loaded = json.loads(ran.stdout)
    assert len(pure) > 20
    assert [name for name in loaded if name.split(".")[0] in IO_LIBRARIES] == []


@pytest.mark.parametrize("name", sorted(n for n in modules() if n != "sync" and not under(n, UNLAYERED)))
def test_no_import_runs_up_the_house(name: str) -> None:
    own = layer(name)
    assert own is not None, f"{name} has no layer: add it to LAYERS"
    upward = sorted(
        f"{other} (layer {layer(other)})" for other in imported(name) if (layer(other) or 0) > own)
    assert upward == [], f"{name} (layer {own}) imports upward"


def test_the_engine_imports_no_adapter() -> None:
    engine = [name for name in modules() if under(name, ("sync.engine",))]
    reaches = {name: sorted(other for other in imported(name) if under(other, ADAPTERS)) for name in engine}
    assert {name: found for name, found in reaches.items() if found} == {}


def test_a_command_loads_only_what_it_needs() -> None:
    """Each command is a process of its own: parsing its words loads no I/O library (``ledger`` loads the
    ledger, ``serve`` the daemon, when they run), so ``check-config`` and a failing ``--config`` stay quick."""
    script = ("import json, sys\nfrom sync import cli\n"
              "cli.parser().parse_args(['ledger', 'replay', '--since', '2024-01-01'])\n"
              "print(json.dumps(sorted(sys.modules)))")
    ran = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    loaded = json.loads(ran.stdout)
    assert [name for name in loaded if name.split(".")[0] in (*IO_LIBRARIES, "alembic")] == []
