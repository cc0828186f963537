"""The window's message line: errors and notes shown without blocking (tests can read it)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QWidget


class MessageBanner(QWidget):
    """A non-modal error/info line at the top of the window (never blocks, tests can read it)."""

    def __init__(self) -> None:
        super().__init__()
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.clicked.connect(self.hide)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 4, 4, 4)
        lay.addWidget(self.label, 1)
        lay.addWidget(close)
        self.setAutoFillBackground(True)
        self.hide()

    def show_message(self, text: str, error: bool = True) -> None:
        colour = "#fde2e1" if error else "#e6f1fb"
        border = "#d9534f" if error else "#4a90d9"
        self.setStyleSheet(f"MessageBanner {{ background: {colour}; border-bottom: 2px solid {border}; }}")
        self.label.setText(text)
        self.show()

    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""
