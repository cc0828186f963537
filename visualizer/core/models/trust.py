"""Which model and data references can run code when loaded: the trust question's one home.

A ``file.py:factory`` (model or dataset) imports and calls the file; a checkpoint that
``torch.load(weights_only=True)`` refuses needs full unpickling, which can call any function
(probed safely by :func:`visualizer.core.io.torchfile.needs_unpickling`). Callers ask the person
before loading such a reference with trust: ``--trust`` on the command line, a question in the
window; a session file never grants trust by itself.
"""

from __future__ import annotations

from pathlib import Path

from visualizer.core.io.torchfile import needs_unpickling
from visualizer.core.models.zoo import ZOO


def trust_reason(session) -> str | None:
    """Why loading ``session``'s model and data (a :class:`~visualizer.core.io.session.Session`,
    or anything with ``model_ref``, ``weights_path`` and ``dataset``) could run code, or None.

    ``file.py:factory`` imports and calls Python code; a model or weights checkpoint that
    ``torch.load(weights_only=True)`` refuses needs full unpickling (which can call anything); a
    ``file.py:factory`` dataset is imported and called too."""
    reasons = [r for r in (model_trust_reason(session.model_ref, session.weights_path),
                           data_trust_reason(session.dataset)) if r]
    return "; ".join(reasons) or None


def data_trust_reason(name: str | None) -> str | None:
    """Why loading dataset reference ``name`` could run code (a ``file.py:factory``), or None."""
    if name and ".py:" in name and not name.startswith("folder:"):
        return f"the dataset is built by running the Python file {name.split('.py:')[0]}.py"
    return None


def model_trust_reason(ref: str, weights: str | None = None) -> str | None:
    """Why loading model reference ``ref`` (+ ``weights``) could run code, or None."""
    if ".py:" in ref:
        return f"the model is built by running the Python file {ref.split('.py:')[0]}.py"
    candidates = [] if ref in ZOO or ref.startswith("torchvision:") else [ref]
    if weights:
        candidates.append(weights)
    for name in candidates:
        if needs_unpickling(Path(name)):
            return f"{Path(name).name} needs full unpickling, which can run any code"
    return None
