"""The layer rules, core <- ui <- cli: visualizer.core imports neither Qt nor ui nor cli (and works
with Qt made unimportable); ui never imports cli; cli imports ui only in its GUI entry points.

The source checks walk every import statement (module level or inside a function) with ast."""

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "visualizer"
QT = ("PySide6", "pyqtgraph", "shiboken6", "superqt", "PyQt5", "PyQt6")
# Prefix of a fresh interpreter's script in which importing any Qt binding raises ImportError.
BLOCK_QT = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {QT!r}:
            raise ImportError('Qt blocked: ' + name)
sys.meta_path.insert(0, Block())
"""
# the CLI's doors into the GUI, all rendering with Qt's offscreen platform (no display) except the
# window itself: gui.py (`gui`, `screenshot`, lth-report's curves PNG) and presets.py (`preset`,
# `deck`: a preset's figure as drawn by the app)
CLI_MODULES_IMPORTING_UI = {"visualizer/cli/gui.py", "visualizer/cli/presets.py"}


def _module_name(path: pathlib.Path, root: pathlib.Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: pathlib.Path, root: pathlib.Path = ROOT) -> list[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved; for
    ``from pkg import name`` both ``pkg`` and ``pkg.name``, as name may be a submodule)."""
    tree = ast.parse(path.read_text(), str(path))
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names.append(base)
            names += [f"{base}.{a.name}" for a in node.names]
    return names


def _offenders(layer: str, forbidden, allowed: set[str] = frozenset()) -> list[str]:
    out = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        if rel in allowed:
            continue
        out += [f"{rel}: {n}" for n in imported_modules(path) if forbidden(n)]
    return sorted(set(out))


def _is_qt(name: str) -> bool:
    return name.split(".")[0] in QT


def _is_ui(name: str) -> bool:
    return name == "visualizer.ui" or name.startswith("visualizer.ui.")


def _is_cli(name: str) -> bool:
    return name == "visualizer.cli" or name.startswith("visualizer.cli.")


def test_core_source_has_no_qt_imports():
    assert _offenders("core", _is_qt) == []


def test_core_imports_neither_ui_nor_cli():
    assert _offenders("core", lambda n: _is_ui(n) or _is_cli(n)) == []


def test_ui_never_imports_cli():
    assert _offenders("ui", _is_cli) == []


def test_cli_imports_ui_only_in_its_gui_entry_points():
    assert _offenders("cli", _is_ui, allowed=CLI_MODULES_IMPORTING_UI) == []
    assert _offenders("cli", _is_qt, allowed=CLI_MODULES_IMPORTING_UI) == []


def test_the_import_checker_sees_lazy_and_relative_imports(tmp_path):
    """The checks above are only as good as imported_modules: it must see imports inside
    functions and resolve relative ones."""
    fake = tmp_path / "visualizer" / "ui" / "views" / "x.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("import os\n\ndef f():\n    from ...cli import common\n    import visualizer.ui.app\n")
    names = imported_modules(fake, tmp_path)
    assert "visualizer.cli.common" in names and "visualizer.cli" in names
    assert "visualizer.ui.app" in names and "os" in names


def test_ui_modules_other_than_the_entry_points_do_not_import_the_window():
    """sessions, training_ui, menus, dialogs... take the window as an argument (a narrow Protocol);
    only the app and the screenshot entry point build one."""
    entry_points = {"visualizer/ui/app.py", "visualizer/ui/files/screenshot.py", "visualizer/ui/shell/window.py"}
    assert _offenders("ui", lambda n: n == "visualizer.ui.shell.window", allowed=entry_points) == []


def test_core_imports_with_qt_blocked():
    """Import every core module in a fresh interpreter where importing Qt raises."""
    code = BLOCK_QT + """
import importlib, pkgutil
import visualizer.core as core
for m in pkgutil.walk_packages(core.__path__, 'visualizer.core.'):
    importlib.import_module(m.name)
print('ok')
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "ok" in out.stdout


def test_a_headless_cli_command_runs_with_qt_unimportable():
    """`pruneviz prune` (any command but gui/screenshot) needs neither Qt nor a display."""
    code = BLOCK_QT + """
from visualizer.cli import main
raise SystemExit(main(['prune', 'lenet', '--density', '0.2']))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "to 20.00% requested: kept 3,903 of 19,518" in out.stdout


def test_preset_list_runs_with_qt_unimportable():
    """The presets' jobs, titles and captions are core's: listing them needs no Qt."""
    code = BLOCK_QT + """
from visualizer.cli import main
raise SystemExit(main(['preset', '--list', '--json']))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert '"name": "lth"' in out.stdout and '"name": "mask-probability"' in out.stdout


# --- core's own layering ------------------------------------------------------------------------
# Core's subpackages (and its top-level modules: tasks, errors, device, workspace, ...) form a
# directed acyclic graph of runtime imports, and no core module imports another inside a function
# (a function-level import is how a cycle hides). Imports under ``if TYPE_CHECKING:`` never run
# and are not edges. Optional heavy dependencies (ray, torchvision, transformers, PIL) may still be
# imported inside functions: they are not visualizer.core modules, so these checks ignore them.
#
# KNOWN_BACK_EDGE: the one cycle left, named so that any other fails. pruning.criteria's
# second-order scores (OBD, GraSP) differentiate through curvature.operator's Hessian operator,
# while curvature builds its coordinates from pruning's masks and prunable weights. No module of
# the two imports the other back (the operator imports masks and prunable, which import neither
# criteria nor curvature), so no function-level import is needed for it. Breaking it means giving
# the Hessian-vector-product operator a home below pruning.
KNOWN_BACK_EDGE = ("pruning", "curvature")
# function-level core imports still allowed, each with its reason (none today)
ALLOWED_FUNCTION_IMPORTS: set[tuple[str, str]] = set()


def _core_imports() -> list[tuple[str, str, bool]]:
    """(file, imported visualizer.core module, inside a function?) for every runtime import of
    a core module by a core module (TYPE_CHECKING blocks left out)."""
    out = []
    for path in sorted((PACKAGE / "core").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        tree = ast.parse(path.read_text(), rel)

        def visit(node, in_function: bool, rel: str = rel) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    continue
                inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                names = []
                if isinstance(child, ast.Import):
                    names = [a.name for a in child.names]
                elif isinstance(child, ast.ImportFrom) and not child.level:
                    names = [child.module or ""]
                out.extend((rel, n, in_function) for n in names if n.startswith("visualizer.core."))
                visit(child, inner, rel)

        visit(tree, False)
    return out


def _layer(module: str) -> str:
    """The node of the graph: core's subpackage or top-level module (visualizer.core.X...)."""
    return module.split(".")[2]


def _layer_of_file(rel: str) -> str:
    parts = pathlib.Path(rel).with_suffix("").parts
    return parts[2]


def test_core_modules_import_each_other_only_at_module_level():
    lazy = sorted({(f, m) for f, m, inside in _core_imports() if inside} - ALLOWED_FUNCTION_IMPORTS)
    assert lazy == []


def test_cores_subpackages_form_a_dag():
    import networkx as nx

    graph = nx.DiGraph()
    for f, m, _ in _core_imports():
        a, b = _layer_of_file(f), _layer(m)
        if a != b:
            graph.add_edge(a, b)
    assert graph.has_edge(*KNOWN_BACK_EDGE), "the known cycle is gone: delete KNOWN_BACK_EDGE"
    graph.remove_edge(*KNOWN_BACK_EDGE)
    assert list(nx.simple_cycles(graph)) == []


def test_cores_modules_form_a_dag():
    """No core module imports, at module level, one that imports it back (directly or through
    others): a cycle between modules is what forces a function-level import, even inside one
    subpackage or along the known back edge."""
    import networkx as nx

    modules = {_module_name(p, ROOT) for p in (PACKAGE / "core").rglob("*.py")}

    def module_of(name: str) -> str:  # "pkg.mod.Name" -> "pkg.mod"; a package -> its __init__
        while name not in modules and "." in name:
            name = name.rpartition(".")[0]
        return name

    graph = nx.DiGraph()
    for f, m, inside in _core_imports():
        a, b = _module_name(ROOT / f, ROOT), module_of(m)
        if not inside and a != b:
            graph.add_edge(a, b)
    assert list(nx.simple_cycles(graph)) == []


def test_the_layer_checker_sees_function_level_and_skips_type_checking_imports(tmp_path, monkeypatch):
    fake = tmp_path / "visualizer" / "core" / "pruning" / "x.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                    "    from visualizer.core.models import loaders\n\n"
                    "def f():\n    from visualizer.core.training import loop\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "visualizer")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert _core_imports() == [("visualizer/core/pruning/x.py", "visualizer.core.training", True)]


def test_every_import_of_a_visualizer_name_resolves():
    """Every ``from visualizer.X import name`` anywhere in the package and its tests and
    benchmarks (function-level ones too, which only fail when that code path runs) names a module
    or an attribute that exists: a function moved to its proper home leaves no caller importing it
    from the old one."""
    import importlib

    missing = []
    for path in sorted([*PACKAGE.rglob("*.py"), *(ROOT / "tests").rglob("*.py")]):
        rel = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            if not (isinstance(node, ast.ImportFrom) and not node.level and node.module
                    and node.module.split(".")[0] == "visualizer"):
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                if alias.name == "*" or hasattr(module, alias.name):
                    continue
                try:
                    importlib.import_module(f"{node.module}.{alias.name}")
                except ModuleNotFoundError:
                    missing.append(f"{rel}:{node.lineno}: {node.module}.{alias.name}")
    assert missing == []


def _calls(pattern: str) -> list[str]:
    """Files under visualizer/ whose source matches ``pattern`` (a regular expression)."""
    import re

    rx = re.compile(pattern)
    return sorted(str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if rx.search(p.read_text()))


def test_one_home_for_torch_files_devices_and_error_lines():
    """torch.load runs in core.io.torchfile only (weights_only unless trusted); devices are
    chosen and read in core.device only; a first-line formatter is defined in core.errors only."""
    assert _calls(r"torch\.load\((?!weights_only)") == ["visualizer/core/io/torchfile.py"]  # not docstrings
    assert _calls(r"def (resolve_device|model_device)\(") == ["visualizer/core/device.py"]
    assert _calls(r"def first_line\(") == ["visualizer/core/errors.py"]
