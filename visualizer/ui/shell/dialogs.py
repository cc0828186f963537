"""The window's modal dialogs: file choosers, the unsaved-work prompt, About.

Each chooser returns a path, or None when the user cancels; the export actions take any widget
with a ``safely(fn, done_text)`` method (the main window), so this module never imports it.
"""

from __future__ import annotations

from typing import Protocol

from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox, QWidget

MODEL_FILTER = "Models (*.pt *.pth *.ts *.jit *.py *.safetensors *.pviz);;All files (*)"
SESSION_FILTER = "Pruning sessions (*.pviz)"


class ExportHost(Protocol):
    """What the export dialogs need of the window: a parent widget that runs an action safely."""

    def safely(self, fn, done_text: str = "") -> bool: ...


def choose_model_file(parent: QWidget) -> str | None:
    path, _ = QFileDialog.getOpenFileName(parent, "Open model", "", MODEL_FILTER)
    return path or None


def choose_session_to_open(parent: QWidget) -> str | None:
    path, _ = QFileDialog.getOpenFileName(parent, "Open session", "", SESSION_FILTER)
    return path or None


def choose_session_to_save(parent: QWidget) -> str | None:
    """A .pviz path to save to (the suffix added when the user left it out)."""
    path, _ = QFileDialog.getSaveFileName(parent, "Save session", "session.pviz", SESSION_FILTER)
    if not path:
        return None
    return path if path.endswith(".pviz") else path + ".pviz"


def ask_factory(parent: QWidget, file_name: str) -> str | None:
    """The function in a model.py that builds the model."""
    factory, ok = QInputDialog.getText(parent, "Model factory", f"Function in {file_name} that builds the model:",
                                       text="build_model")
    return factory if ok and factory else None


def ask_discard(parent: QWidget) -> str:
    """'save', 'discard' or 'cancel' for unsaved work."""
    box = QMessageBox(parent)
    box.setWindowTitle("Unsaved work")
    box.setText("This session has unsaved masks or results.")
    box.setInformativeText("Save it before closing? (Results are also autosaved for recovery.)")
    box.setStandardButtons(QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                           | QMessageBox.StandardButton.Cancel)
    answer = box.exec()
    return {QMessageBox.StandardButton.Save: "save", QMessageBox.StandardButton.Discard: "discard"}.get(
        QMessageBox.StandardButton(answer), "cancel")


def show_about(parent: QWidget) -> None:
    QMessageBox.about(parent, "Pruning Visualizer",
                      "See what pruning does to a neural network: criteria, masks, retraining, "
                      "lottery tickets.\nCompute: visualizer.core; this window only draws.")


# --- export --------------------------------------------------------------------------------------
def export_view_dialog(window: ExportHost, view_id: str, fmt: str) -> None:
    path, _ = QFileDialog.getSaveFileName(window, "Export view", f"{view_id}.{fmt}", f"*.{fmt}")
    if path:
        from visualizer.ui.files import export

        window.safely(lambda: export.export_view(window, view_id, path), f"exported {path}")


def export_results_dialog(window: ExportHost) -> None:
    path, _ = QFileDialog.getSaveFileName(window, "Export results", "results.csv", "CSV (*.csv)")
    if path:
        from visualizer.ui.files import export

        window.safely(lambda: export.export_results(window, path), f"exported {path}")


def export_compare_dialog(window: ExportHost) -> None:
    path, _ = QFileDialog.getSaveFileName(window, "Export comparison", "compare.csv", "CSV (*.csv)")
    if path:
        from visualizer.ui.files import export

        window.safely(lambda: export.export_compare(window, path), f"exported {path}")


def export_mask_dialog(window: ExportHost, fmt: str) -> None:
    name = {"safetensors": "mask.safetensors", "nni": "mask_nni.pt"}.get(fmt, "mask_prune_state.pt")
    path, _ = QFileDialog.getSaveFileName(window, "Export mask", name)
    if path:
        from visualizer.ui.files import export

        window.safely(lambda: export.export_mask(window, path, fmt), f"exported {path}")
