"""A checkpoint that runs code when fully unpickled: what the trust checks must never open unasked."""

from __future__ import annotations

from pathlib import Path

import torch


class Evil:
    """Unpickling it writes ``marker`` (``__reduce__`` makes pickle call ``exec``)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def evil_weights(tmp_path: Path) -> tuple[Path, Path]:
    """``tmp_path/evil.pt`` holding an :class:`Evil`, and the marker file that appears if it ran."""
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pt"
    torch.save({"payload": Evil(str(marker))}, path)
    return path, marker
