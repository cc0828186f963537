"""Can the window open here? Checked before Qt starts, so a lecture laptop or a lab desktop gets
one line saying what is missing instead of Qt's "Could not load the Qt platform plugin 'xcb'"
and an abort.

Qt 6.5 and later load the xcb platform plugin only when these X11 libraries are present, and
many desktops lack some of them (libxcb-cursor0 above all). :func:`preflight` names the
missing ones and the command that installs them (apt, dnf or pacman); with no display at all
it points to the headless ways in (``pruneviz screenshot`` and the CLI).
"""

from __future__ import annotations

import ctypes.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

# library soname stem -> package name on (Debian/Ubuntu, Fedora/RHEL, Arch)
XCB_LIBRARIES: dict[str, tuple[str, str, str]] = {
    "xcb-cursor": ("libxcb-cursor0", "xcb-util-cursor", "xcb-util-cursor"),
    "xcb-icccm": ("libxcb-icccm4", "xcb-util-wm", "xcb-util-wm"),
    "xcb-keysyms": ("libxcb-keysyms1", "xcb-util-keysyms", "xcb-util-keysyms"),
    "xcb-image": ("libxcb-image0", "xcb-util-image", "xcb-util-image"),
    "xcb-render-util": ("libxcb-render-util0", "xcb-util-renderutil", "xcb-util-renderutil"),
    "xcb-shape": ("libxcb-shape0", "libxcb", "libxcb"),
    "xcb-xkb": ("libxcb-xkb1", "libxcb", "libxcb"),
    "xkbcommon-x11": ("libxkbcommon-x11-0", "libxkbcommon-x11", "libxkbcommon-x11"),
    "xcb-randr": ("libxcb-randr0", "libxcb", "libxcb"),
    "xcb-xinerama": ("libxcb-xinerama0", "libxcb", "libxcb"),
    "xcb-sync": ("libxcb-sync1", "libxcb", "libxcb"),
    "xcb-xfixes": ("libxcb-xfixes0", "libxcb", "libxcb"),
    "X11-xcb": ("libx11-xcb1", "libX11-xcb", "libx11"),
    "EGL": ("libegl1", "mesa-libEGL", "libglvnd"),
    "GL": ("libgl1", "mesa-libGL", "libglvnd"),
    "fontconfig": ("libfontconfig1", "fontconfig", "fontconfig"),
    "dbus-1": ("libdbus-1-3", "dbus-libs", "dbus"),
}
MANAGERS = (("apt-get", "sudo apt-get install"), ("dnf", "sudo dnf install"), ("pacman", "sudo pacman -S"))
HEADLESS_PLATFORMS = {"offscreen", "minimal", "vnc", "eglfs", "linuxfb", "wayland", "wayland-egl", "cocoa", "windows"}


def _plugin_files() -> list[Path]:
    """Qt's xcb plugin and the xcb integration library it loads, inside the PySide6 wheel."""
    try:
        import PySide6
    except ImportError:
        return []
    qt = Path(PySide6.__file__).parent / "Qt"
    found = [qt / "plugins" / "platforms" / "libqxcb.so"]
    found += sorted((qt / "lib").glob("libQt6XcbQpa.so*"))[:1]
    return [p for p in found if p.exists()]


def _ldd_missing(files: list[Path]) -> list[str]:
    """Soname stems that ldd reports as "not found" for ``files``."""
    if not files or shutil.which("ldd") is None:
        return []
    missing: list[str] = []
    for f in files:
        try:
            out = subprocess.run(["ldd", str(f)], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        for lib in re.findall(r"^\s*lib(\S+?)\.so\S*\s*=>\s*not found", out, re.M):
            if lib not in missing:
                missing.append(lib)
    return missing


def missing_xcb_libraries(find: Callable[[str], str | None] = ctypes.util.find_library,
                          ldd: Callable[[list[Path]], list[str]] | None = None) -> list[str]:
    """The X11 libraries the xcb plugin needs and this system lacks: what ldd reports missing for
    the plugin, plus those of :data:`XCB_LIBRARIES` the dynamic loader cannot find (Qt loads
    libxcb-cursor at run time, so ldd alone does not see it)."""
    missing = (ldd or _ldd_missing)(_plugin_files())
    for stem in ("xcb-cursor", "xcb-icccm", "xcb-keysyms", "xcb-image", "xcb-render-util", "xkbcommon-x11"):
        if stem not in missing and find(stem) is None:
            missing.append(stem)
    return missing


def install_command(missing: list[str], which: Callable[[str], str | None] = shutil.which) -> str:
    """The package manager's install line for ``missing`` (apt, dnf or pacman; apt's names when
    none of them is on PATH)."""
    column = next((i for i, (tool, _) in enumerate(MANAGERS) if which(tool)), 0)
    command = MANAGERS[column][1]
    packages: list[str] = []
    for stem in missing:
        name = XCB_LIBRARIES.get(stem, (f"lib{stem}",) * 3)[column]
        if name not in packages:
            packages.append(name)
    return f"{command} {' '.join(packages)}"


def preflight(env: Mapping[str, str] | None = None, platform: str = sys.platform,
              missing: Callable[[], list[str]] = missing_xcb_libraries) -> str | None:
    """None when the window can open here; else one line saying why not and what to do."""
    env = os.environ if env is None else env
    chosen = env.get("QT_QPA_PLATFORM", "").split(":")[0].strip().lower()
    if not platform.startswith("linux") or chosen in HEADLESS_PLATFORMS:
        return None
    if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        return ("no display: the window needs a desktop session (DISPLAY or WAYLAND_DISPLAY is unset); "
                "without one use `pruneviz screenshot --view window --out app.png` or the command line "
                "(`pruneviz --help`)")
    if env.get("WAYLAND_DISPLAY") and not env.get("DISPLAY"):
        return None  # Qt picks its Wayland plugin, which needs none of the xcb libraries
    lacking = missing()
    if not lacking:
        return None
    return (f"Qt cannot open a window: its xcb platform plugin needs system libraries that are missing "
            f"({', '.join('lib' + s for s in lacking)}); install them with: {install_command(lacking)}")
