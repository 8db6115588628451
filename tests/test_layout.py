"""The code's shape: one job per module, no import cycles, public dependency APIs only."""

import ast
import re
from pathlib import Path

import pytest

from sweep.cli.arguments import build_parser
from sweep.cli.main import COMMANDS, main

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted((ROOT / "sweep").rglob("*.py"))

# The layers of sweep/ (docs/architecture.md): each part may import the parts listed for it
# and nothing else, so a change low down never needs a change high up, and each question
# ("where is it stored?", "what does a trial run?") has its answer in one folder.
BASE = {"errors", "system"}  # exceptions and the process's OS services, used everywhere
ALLOWED = {
    "errors": {"system"},
    "system": {"errors"},
    "spec": BASE,
    "store": BASE | {"spec"},
    "objectives": BASE | {"spec", "store"},
    "results": BASE | {"spec", "store"},
    "execution": BASE | {"spec", "store", "objectives", "results"},
    "api": BASE | {"spec", "store", "objectives", "results", "execution"},
    "cli": BASE | {"spec", "store", "objectives", "results", "execution", "api"},
    "package": {"api", "errors", "objectives"},  # sweep/__init__.py: the public names
}


def is_module(dotted_name: str) -> bool:
    base = ROOT / dotted_name.replace(".", "/")
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def imported_sweep_modules(path: Path) -> set[str]:
    """sweep.* modules a file imports anywhere, inside functions too: `from sweep.store
    import queue` is sweep.store.queue, `from sweep.store.queue import pop` is too."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("sweep.")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sweep"):
            for a in node.names:
                name = f"{node.module}.{a.name}"
                found.add(name if is_module(name) else node.module)
    return {m for m in found if is_module(m) and m != "sweep"}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def dotted(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str:
    """sweep.store.queue -> store; sweep.api and sweep.reading (the API's Study) -> api."""
    names = module.split(".")
    if len(names) == 1:
        return "package"
    if names[1] in ("api", "reading"):
        return "api"
    return names[1]


def layer_violations() -> list[str]:
    found = []
    for path in MODULES:
        mine = part_of(dotted(path))
        for imported in imported_sweep_modules(path):
            theirs = part_of(imported)
            if theirs != mine and theirs not in ALLOWED[mine]:
                found.append(f"{dotted(path)} ({mine}) imports {imported} ({theirs})")
    return sorted(found)


def test_each_part_imports_only_the_parts_below_it():
    assert set(map(part_of, map(dotted, MODULES))) <= set(ALLOWED), "a part with no rule"
    assert layer_violations() == []


def test_the_layer_rule_catches_an_upward_import(tmp_path, monkeypatch):
    # store -> execution is upward: the rule must say so, or it would pass on anything.
    assert "execution" not in ALLOWED["store"] and "cli" not in ALLOWED["execution"]
    assert part_of("sweep.store.queue") == "store" and part_of("sweep.reading") == "api"


def test_no_import_cycle_among_sweep_modules():
    graph = {dotted(p): imported_sweep_modules(p) for p in MODULES}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize(
    "path", [*MODULES, *sorted((ROOT / "core").glob("*.py"))], ids=lambda p: dotted(p)
)
def test_modules_stay_small(path):
    # 350 lines is the guideline (docs/architecture.md groups modules by concept instead of
    # splitting them by size); past 400 a module holds more than one job.
    lines = len(path.read_text().splitlines())
    limit = 300 if path.relative_to(ROOT).as_posix() == "sweep/cli/main.py" else 400
    assert lines <= limit, f"{path.name} has {lines} lines (limit {limit}): split its jobs"


def test_no_private_attributes_of_dependencies():
    pattern = re.compile(r"\._(storage|study_id|trial_id|backend)\b|joblib\.externals")
    hits = [
        f"{dotted(p)}:{n}: {line.strip()}"
        for p in MODULES
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not hits, hits


def test_every_command_has_help_a_handler_and_a_readme_mention(capsys):
    commands = build_parser().commands
    assert set(commands) == set(COMMANDS)
    readme = (ROOT / "README.md").read_text()
    for name in commands:
        assert main([name, "--help"]) == 0
        assert f"usage: sweep {name}" in capsys.readouterr().out
        assert f"`sweep {name}" in readme, f"README does not mention sweep {name}"


CITED = re.compile(
    r"\b((?:sweep|core|tests|bench|examples|studies|\.ci)/[\w./-]+\.(?:py|toml|md|sh))"
)


def test_the_text_cites_only_files_that_exist():
    # Comments and docstrings point at files a newcomer can open; DESIGN.md is not one of
    # them (it is the contract kept outside the repository).
    root = Path(__file__).resolve().parent.parent
    missing = []
    for path in [
        *root.glob("sweep/**/*.py"),
        *root.glob("core/*.py"),
        *root.glob("bench/*.py"),
        *root.glob("examples/**/*.py"),
        *root.glob("tests/**/*.py"),
        root / "README.md",
    ]:
        text = path.read_text(encoding="utf-8")
        if "DESIGN.md" in text and path.name != "test_layout.py":
            missing.append(f"{path.relative_to(root)} cites DESIGN.md")
        for cited in CITED.findall(text):
            if not (root / cited).exists() and "PATH" not in cited and "*" not in cited:
                missing.append(f"{path.relative_to(root)} cites {cited}")
    assert not missing, missing
