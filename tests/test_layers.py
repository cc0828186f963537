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
