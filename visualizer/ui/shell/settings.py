"""Where the app keeps what outlives a run: QSettings (layout, recent files) and the autosave file."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths

APP_NAME = "pruneviz"
MAX_RECENT = 8


def settings() -> QSettings:
    """The app's QSettings; tests set PRUNEVIZ_SETTINGS_ORG so they never touch a user's."""
    # QSettings.defaultFormat() (native unless changed) rather than the (org, app) constructor,
    # which ignores setDefaultFormat: the tests' IniFormat path in tmp then really isolates them
    return QSettings(QSettings.defaultFormat(), QSettings.Scope.UserScope,
                     os.environ.get("PRUNEVIZ_SETTINGS_ORG", "pruneviz"), APP_NAME)


def recovery_path() -> Path:
    """Where results are autosaved (a .pviz), so a crash loses nothing computed."""
    env = os.environ.get("PRUNEVIZ_RECOVERY")
    if env:
        return Path(env)
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(base or Path.home() / ".pruneviz") / "recovery.pviz"


def recent_files() -> list[str]:
    """Recently opened files, newest first."""
    value = settings().value("recentFiles", [])
    if isinstance(value, str):
        value = [value]
    return [str(v) for v in (value or [])]


def add_recent_file(path: str) -> list[str]:
    """Put ``path`` first in the recent list (at most MAX_RECENT); returns the new list."""
    items = [path, *[p for p in recent_files() if p != path]][:MAX_RECENT]
    st = settings()
    st.setValue("recentFiles", items)
    st.sync()
    return items
