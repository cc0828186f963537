"""Work around a reference-count leak on None/True/False in PySide6 6.12 on Python 3.11.

Every call of a Python override of ``QGraphicsItem.itemChange`` (pyqtgraph's GraphicsObject has
one) drops one reference too many of the returned singleton (None, True or False). Adding a
pyqtgraph item to a plot costs about three of them, so after roughly 700 item additions True's
reference count reaches zero and the interpreter aborts with
``Fatal Python error: bool_dealloc: deallocating True or False``. Measured here: adding 200
PlotCurveItems takes sys.getrefcount(True) from 2200 to 1600.

On Python >= 3.12 these singletons are immortal and nothing needs doing. On 3.11 we raise their
reference counts by a large constant once per process: they are never deallocated anyway, so the
only effect is that the leak can no longer reach zero. Call :func:`pin_singletons` before
creating pyqtgraph items (the analysis views do it on import; the app should do it at start).
"""

from __future__ import annotations

import ctypes
import sys

_PINNED = False
PIN = 1 << 40


def pin_singletons() -> bool:
    """Make None/True/False effectively immortal on CPython < 3.12; True if it changed anything."""
    global _PINNED
    if _PINNED or sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return False
    for obj in (None, True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += PIN
    _PINNED = True
    return True
