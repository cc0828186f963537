"""The layer rule: visualizer.core never imports Qt, and works with Qt made unimportable."""

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
QT = ("PySide6", "pyqtgraph", "shiboken6", "superqt", "PyQt5", "PyQt6")


def test_core_source_has_no_qt_imports():
    offenders = []
    for path in (ROOT / "visualizer" / "core").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in QT]
    assert offenders == []


def test_core_imports_with_qt_blocked():
    """Import every core module in a fresh interpreter where importing Qt raises."""
    code = f"""
import sys, importlib, pkgutil
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {QT!r}:
            raise ImportError('Qt blocked: ' + name)
sys.meta_path.insert(0, Block())
import visualizer.core as core
for m in pkgutil.walk_packages(core.__path__, 'visualizer.core.'):
    importlib.import_module(m.name)
print('ok')
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "ok" in out.stdout
