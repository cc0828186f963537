"""The window's one device chooser (status bar): every job runs on the device chosen here.

The chooser lists ``auto`` and the devices present (``cpu``, ``cuda:i`` with the memory this
process holds on it, ``mps``); the choice lives in ``window.state.device`` and in sessions. Jobs
resolve it once when they are requested (:func:`job_device`), through the one resolver,
core.workspace.resolve_device, so a device that disappeared is one line in the status bar.
"""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QWidget

from visualizer.core.workspace import available_devices, device_memory, device_name, resolve_device


def device_choices() -> list[tuple[str, str]]:
    """(value, label) pairs: auto first (with what it picks), then every device present."""
    auto = device_name(resolve_device("auto"))
    out = [("auto", f"auto ({auto})")]
    for dev in available_devices():
        mem = device_memory(dev)
        out.append((dev, f"{dev} · {mem}" if mem else dev))
    return out


class DeviceSelector(QWidget):
    """'Device: [auto (cpu)]' for the status bar; writes ``state.device`` on change."""

    def __init__(self, state, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.box = QComboBox()
        self.box.setToolTip("Device every computation runs on: ranking with data criteria, training, "
                            "sweeps, spectrum, landscape and speed (auto: CUDA, then MPS, then CPU)")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(QLabel("Device"))
        lay.addWidget(self.box)
        self.refresh()
        self.box.currentIndexChanged.connect(self._chosen)
        # memory in use changes as jobs run: relist when the user opens the list
        original = self.box.showPopup

        def show_popup() -> None:
            self.refresh()
            original()

        self.box.showPopup = show_popup

    def refresh(self) -> None:
        """Relist the devices (memory figures change) keeping the current choice."""
        current = self.state.device
        self.box.blockSignals(True)
        try:
            self.box.clear()
            for value, label in device_choices():
                self.box.addItem(label, value)
            i = self.box.findData(current)
            if i < 0:  # e.g. a session saved on a GPU machine: keep it, marked missing
                self.box.addItem(f"{current} (not available)", current)
                i = self.box.count() - 1
            self.box.setCurrentIndex(i)
        finally:
            self.box.blockSignals(False)

    def set_device(self, value: str) -> None:
        """Choose ``value`` (a session's device); one not present is listed as not available."""
        self.state.device = str(value or "auto")
        self.refresh()

    def _chosen(self, index: int) -> None:
        value = self.box.itemData(index)
        if value:
            self.state.device = str(value)


def install_device_selector(window) -> DeviceSelector:
    """Add the chooser to the window's status bar (once) and return it."""
    existing = getattr(window, "device_selector", None)
    if existing is not None:
        return existing
    selector = DeviceSelector(window.state, window)
    window.statusBar().addPermanentWidget(selector)
    window.device_selector = selector
    return selector


def job_device(window) -> str | None:
    """The resolved device for a job requested now (``cpu``, ``cuda:0``, ``mps``), or None after
    showing the one-line reason when the chosen device is not there."""
    try:
        return device_name(resolve_device(window.state.device))
    except ValueError as exc:
        window.show_error(f"device: {exc}")
        return None
