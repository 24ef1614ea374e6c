"""The import rules that keep the layers of README.md's Development section running one way.

Every module of ``src/callgate`` belongs to one layer; it may import its own package and the
layers below it, never one above, and the drivers (``pbx``, ``db``, the simulated Asterisk)
know nothing of each other. Imports are read from the source with ``ast`` (those inside
functions and ``TYPE_CHECKING`` blocks count too: a type is a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
ROOT = SRC / "callgate"

# Top to bottom. A module's layer is that of the longest prefix naming it.
LAYERS: dict[str, tuple[str, ...]] = {
    "entry": (
        "callgate.__main__",
        "callgate.cli",
        "callgate.cli_calls",
        "callgate.cli_common",
        "callgate.cli_service",
        "callgate.cli_webhooks",
    ),
    "wiring": ("callgate.app", "callgate.wiring", "callgate.demo"),
    "http": ("callgate.api",),
    "use cases": ("callgate.calls",),
    "drivers": ("callgate.pbx", "callgate.db", "callgate.simulator"),
    "domain": (
        "callgate.domain",
        "callgate.errors",
        "callgate.validation",
        "callgate.redaction",
        "callgate.settings",
        "callgate.logs",
        "callgate.private_files",
        "callgate.tasks",
        "callgate.metrics",
    ),
}
ORDER = list(LAYERS)
# Below the entry points, a layer may skip the one under it only where it says so here: the
# HTTP layer reaches the drivers through the use cases, never directly.
SKIP_FORBIDDEN = {("http", "drivers"), ("entry", "drivers"), ("entry", "http")}
DRIVERS = LAYERS["drivers"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """The callgate modules ``path`` imports (``from x import y`` counts ``x``, and ``x.y``
    when that is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else None
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = (package or module_name(path)).split(".")
                base = ".".join(anchor[: len(anchor) - node.level + 1] + ([base] if base else []))
            found.add(base)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                if _exists(candidate):
                    found.add(candidate)
    return {name for name in found if name == "callgate" or name.startswith("callgate.")}


def _exists(module: str) -> bool:
    relative = Path(*module.split("."))
    return (SRC / relative).with_suffix(".py").exists() or (SRC / relative).is_dir()


def layer_of(module: str) -> str | None:
    best: tuple[int, str] | None = None
    for layer, prefixes in LAYERS.items():
        for prefix in prefixes:
            named = module == prefix or module.startswith(prefix + ".")
            if named and (best is None or len(prefix) > best[0]):
                best = (len(prefix), layer)
    return None if best is None else best[1]


def driver_of(module: str) -> str | None:
    return next((p for p in DRIVERS if module == p or module.startswith(p + ".")), None)


def broken_rules(name: str, targets: set[str]) -> list[str]:
    """What module ``name`` importing ``targets`` breaks of the rules."""
    own = layer_of(name)
    if own is None:
        return [f"{name}: in no layer (add it to LAYERS)"]
    found: list[str] = []
    for target in sorted(targets - {"callgate"}):  # the package itself: its version string
        theirs = layer_of(target)
        if theirs is None:
            continue  # reported as a module of its own
        if ORDER.index(theirs) < ORDER.index(own):
            found.append(f"{name} ({own}) imports {target} ({theirs}): an arrow up")
        elif (own, theirs) in SKIP_FORBIDDEN:
            found.append(f"{name} ({own}) imports {target} ({theirs}): skips a layer")
        elif own == theirs == "drivers" and driver_of(name) != driver_of(target):
            found.append(f"{name} imports {target}: drivers know nothing of each other")
    return found


def violations() -> list[str]:
    found: list[str] = []
    for path in sorted(ROOT.rglob("*.py")):
        name = module_name(path)
        if name != "callgate":
            found += broken_rules(name, imports(path))
    return found


def test_every_import_runs_down() -> None:
    assert violations() == []


@pytest.mark.parametrize(
    ("name", "target", "expected"),
    [
        ("callgate.db.models", "callgate.calls.service", "an arrow up"),
        ("callgate.db.models", "callgate.pbx.client", "drivers know nothing"),
        ("callgate.api.v1.calls", "callgate.db.engine", "skips a layer"),
        ("callgate.stray", "callgate.errors", "in no layer"),
    ],
)
def test_the_rules_catch_a_wrong_import(name: str, target: str, expected: str) -> None:
    """The rules can fail: each kind of wrong import is reported."""
    assert any(expected in line for line in broken_rules(name, {target}))


def test_imports_are_read_from_the_source() -> None:
    """Relative and ``from package import module`` imports are seen (checked on real files)."""
    assert "callgate.domain.states" in imports(ROOT / "calls" / "channels.py")
    assert {"callgate.api.v1.calls", "callgate.api.v1.problems"} <= imports(ROOT / "app.py")
