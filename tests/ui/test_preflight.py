"""The launch check: a missing display or missing xcb libraries is one line, before Qt starts."""

import subprocess
import sys

from visualizer.ui.shell import preflight as P


def test_no_display_points_to_the_headless_ways_in():
    line = P.preflight(env={}, platform="linux", missing=lambda: [])
    assert line.startswith("no display") and "pruneviz screenshot" in line and "\n" not in line


def test_missing_xcb_libraries_are_named_with_the_install_command():
    line = P.preflight(env={"DISPLAY": ":0"}, platform="linux", missing=lambda: ["xcb-cursor", "xcb-icccm"])
    assert "libxcb-cursor, libxcb-icccm" in line
    assert line.endswith("sudo apt-get install libxcb-cursor0 libxcb-icccm4") or "dnf" in line or "pacman" in line


def test_install_command_follows_the_package_manager():
    only = {"apt-get": None, "dnf": "/usr/bin/dnf", "pacman": None}
    assert P.install_command(["xcb-cursor", "xkbcommon-x11"], which=only.get) == \
        "sudo dnf install xcb-util-cursor libxkbcommon-x11"
    only = {"pacman": "/usr/bin/pacman"}
    assert P.install_command(["xcb-icccm", "xcb-shape"], which=only.get) == "sudo pacman -S xcb-util-wm libxcb"
    assert P.install_command(["xcb-cursor"], which=lambda _: None) == "sudo apt-get install libxcb-cursor0"


def test_a_complete_system_and_headless_platforms_pass():
    assert P.preflight(env={"DISPLAY": ":0"}, platform="linux", missing=lambda: []) is None
    assert P.preflight(env={"QT_QPA_PLATFORM": "offscreen"}, platform="linux", missing=lambda: ["xcb-cursor"]) is None
    assert P.preflight(env={"WAYLAND_DISPLAY": "wayland-0"}, platform="linux", missing=lambda: ["xcb-cursor"]) is None
    assert P.preflight(env={}, platform="darwin", missing=lambda: ["xcb-cursor"]) is None


def test_missing_libraries_come_from_the_loader():
    found = {"xcb-icccm": "libxcb-icccm.so.4", "xcb-keysyms": "x", "xcb-image": "x", "xcb-render-util": "x",
             "xkbcommon-x11": "x"}
    assert P.missing_xcb_libraries(find=found.get, ldd=lambda files: ["xcb-shape"]) == ["xcb-shape", "xcb-cursor"]


def test_the_app_says_it_in_one_line_and_exits_2():
    """`pruneviz` with no display: one line on stderr, exit 2, no traceback (Qt never starts)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    code = "import sys; from visualizer.ui.app import main; sys.exit(main([]))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                          cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pruneviz: no display"), proc.stderr
