"""The window on a real-size model and a folder: torchvision ResNet-50 (random init: no weights
offline) with a small image folder loads within 5 s after imports, and SNIP ranking on the
window's default sample leaves no event-loop gap over 50 ms.

Needs torchvision (the `zoo` extra); prints why it stops otherwise. Its peer is the event loop
itself: a 5 ms timer probe (tests/ui/probe.py) records every gap while the jobs run.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PRUNEVIZ_SETTINGS_ORG", "pruneviz-bench")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> int:
    try:
        import torchvision  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - a CUDA torchvision beside a CPU torch raises RuntimeError
        print(f"bench_data_window: needs torchvision ({type(exc).__name__}: {exc}); pip install 'pruneviz[zoo]'")
        return 0
    from PySide6.QtWidgets import QApplication

    from tests.imagefolders import write_digit_folder
    from tests.ui.probe import StallProbe
    from visualizer.ui.app import configure_threads, make_app
    from visualizer.ui.shell.window import MainWindow

    app = make_app()
    configure_threads()
    folder = write_digit_folder(Path(tempfile.mkdtemp()) / "digits", per_class=8, classes=3, size=64,
                                split=True, mode="RGB")
    window = MainWindow(restore_layout=False, persist_settings=False)
    window.ask_discard = lambda: "discard"
    window.show()
    window.model_panel.weights_choice.pretrained_box.setChecked(False)  # random init: offline

    def wait(predicate, timeout=300.0):
        end = time.monotonic() + timeout
        while not predicate() and time.monotonic() < end:
            app.processEvents()
            time.sleep(0.002)

    probe = StallProbe(interval_ms=5)
    probe.start()
    t0 = time.monotonic()
    window.request_load("torchvision:resnet50", dataset=f"folder:{folder}")
    wait(lambda: window.state.loaded is not None and window.state.loaded.ref == "torchvision:resnet50"
         and window.state.dataset is not None)
    load_s = time.monotonic() - t0
    wait(lambda: not window.jobs.is_running())
    probe.stop()
    print(f"torchvision:resnet50 (random init) + folder:{folder.name} (3 classes, 64x64 RGB) loaded in "
          f"{load_s:.2f} s after imports (target <= 5 s); event loop: {probe.report()}")
    probe = StallProbe(interval_ms=5)
    probe.start()
    t0 = time.monotonic()
    window.pruning_panel.set_settings(criterion="snip")
    wait(lambda: ("snip", "global", "unstructured") in window.state.rankings)
    rank_s = time.monotonic() - t0
    probe.stop()
    print(f"SNIP ranking of ResNet-50 (25.5M weights) on the default sample: {rank_s:.1f} s; "
          f"event loop: {probe.report()} (target: no gap over 50 ms)")
    window.jobs.shutdown(2.0)
    window.close()
    QApplication.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
