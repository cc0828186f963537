"""`pruneviz` (no command): open the window on the embedded default model.

``main(argv)``: argv may name a model reference or a ``.pviz`` session to open instead of the
default. ``PRUNEVIZ_STARTUP_REPORT=1`` prints the seconds from process start until the default
model is shown and quits (the startup benchmark uses it).
"""

from __future__ import annotations

import os
import sys
import time

_T0 = time.monotonic()


def seconds_since_process_start() -> float:
    """Wall seconds since this process started (Linux /proc; else since this module's import)."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _T0


def make_app(argv: list[str] | None = None):
    from PySide6.QtWidgets import QApplication

    from visualizer.ui.views.qtfix import pin_singletons

    pin_singletons()  # PySide6 6.12 on Python 3.11 leaks references of None/True/False

    app = QApplication.instance()
    if app is None:
        app = QApplication([sys.argv[0] if sys.argv else "pruneviz", *(argv or [])])
    app.setApplicationName("pruneviz")
    app.setOrganizationName(os.environ.get("PRUNEVIZ_SETTINGS_ORG", "pruneviz"))
    app.setApplicationDisplayName("Pruning Visualizer")
    return app


def configure_threads() -> int:
    """Leave one core to the GUI thread: torch's intra-op pool gets cores - 1 (at least 1).

    Jobs run torch in a worker thread while the event loop must stay responsive; with every core
    in torch's OpenMP pool the two fight, and training slows by an order of magnitude on a busy
    2-core machine (docs/performance.md). PRUNEVIZ_TORCH_THREADS overrides."""
    import torch

    env = os.environ.get("PRUNEVIZ_TORCH_THREADS")
    n = int(env) if env and env.isdigit() else max(1, (os.cpu_count() or 2) - 1)
    torch.set_num_threads(n)
    return n


def main(argv: list[str] | None = None, trust: bool = False) -> int:
    """``trust``: the person passed ``--trust``: a session or model file that needs full
    unpickling (or a file.py:factory a session names) is opened without asking."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from visualizer.ui.shell.preflight import preflight

    problem = preflight()
    if problem:  # one line, instead of Qt's plugin error and an abort
        print(f"pruneviz: {problem}", file=sys.stderr)
        return 2
    stages = [("main()", seconds_since_process_start())]
    app = make_app()
    configure_threads()
    from visualizer.core.models.zoo import DEFAULT_MODEL
    from visualizer.ui.shell.window import MainWindow

    stages.append(("imports", seconds_since_process_start()))
    # the startup benchmark (PRUNEVIZ_STARTUP_REPORT) is a headless run: it leaves the settings alone
    window = MainWindow(persist_settings=not os.environ.get("PRUNEVIZ_STARTUP_REPORT"))
    window.show()
    stages.append(("window built", seconds_since_process_start()))
    target = argv[0] if argv else DEFAULT_MODEL
    report = os.environ.get("PRUNEVIZ_STARTUP_REPORT")

    def shown() -> None:
        if report:
            steps = ", ".join(f"{name} {t:.2f}" for name, t in stages)
            print(f"startup: window with {window.state.loaded.ref} shown "
                  f"{seconds_since_process_start():.2f} s after process start ({steps})", flush=True)
            window.state.set_dirty(False)
            window.close()

    if target.endswith(".pviz"):
        from visualizer.ui.files import sessions

        sessions.open_session(window, target, trust=trust)
    else:
        window.request_load(target, trust=trust, on_done=shown)
    return int(app.exec())
