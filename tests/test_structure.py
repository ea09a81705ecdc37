"""The shape of the code: every module imports alone, no import cycle, no file over ~500 lines, the fit
loop in trainer.py."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

EMBER = Path(__file__).resolve().parents[1] / "ember"
MAX_LINES = 520


def modules() -> list[str]:
    names = []
    for path in sorted(EMBER.rglob("*.py")):
        parts = path.relative_to(EMBER.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_module_imports_alone_in_a_fresh_interpreter():
    # one interpreter (torch imported once); before each module every ember module is forgotten, so each
    # is imported first, as a user's `import ember.x` would: an import cycle would fail here
    script = (
        "import importlib, sys, traceback\n"
        "import torch\n"
        "failed = []\n"
        f"for name in {modules()!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'ember' or m.startswith('ember.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        failed.append(name + ': ' + traceback.format_exc().splitlines()[-1])\n"
        "print('\\n'.join(failed))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=EMBER.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def module_level_imports(path: Path) -> set[str]:
    """The ember modules `path` imports when it is imported (not inside functions or TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node) if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) else []:
            if isinstance(sub, ast.Import):
                found.update(a.name for a in sub.names if a.name.startswith("ember"))
            elif isinstance(sub, ast.ImportFrom) and sub.module and sub.module.startswith("ember"):
                found.add(sub.module)
                found.update(f"{sub.module}.{a.name}" for a in sub.names)
    return found


def test_no_import_cycle_between_modules():
    names = set(modules())
    graph = {}
    for path in EMBER.rglob("*.py"):
        parts = path.relative_to(EMBER.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        # a package's __init__ imports its children by design; edges go from a module to what it imports
        graph[name] = {m for m in module_level_imports(path) if m in names and m != name
                       and not m.startswith(name + ".")}
    # ember/__init__ re-exports the public names; it is the root, not a participant in cycles
    graph = {k: v - {"ember"} for k, v in graph.items() if k != "ember"}
    cycles = []

    def visit(node, stack):
        for nxt in graph.get(node, ()):
            if nxt in stack:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in seen:
                seen.add(nxt)
                visit(nxt, stack + [nxt])

    for start in graph:
        seen = {start}
        visit(start, [start])
    assert not cycles, cycles[:5]


def test_no_file_is_over_about_500_lines():
    long = {str(p.relative_to(EMBER.parent)): n for p in EMBER.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_the_fit_loop_reads_top_to_bottom_in_trainer_py():
    tree = ast.parse((EMBER / "trainer.py").read_text())
    trainer = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Trainer")
    methods = [n.name for n in trainer.body if isinstance(n, ast.FunctionDef)]
    loop = ["fit", "_fit", "_train_epoch", "_train_batch"]
    assert [m for m in methods if m in loop] == loop  # defined in the order they call each other
