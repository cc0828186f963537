"""A language model in the window: token data from its folder's tokenizer, Wanda on the slider,
perplexity in the status line after Evaluate."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

pytest.importorskip("tokenizers")
pytest.importorskip("transformers")

from tests.llm import PROSE, llama_folder  # noqa: E402
from tests.ui.conftest import wait_idle  # noqa: E402

FACTORY = """
from transformers import LlamaForCausalLM
from transformers.utils import logging

logging.disable_progress_bar()

def build():
    return LlamaForCausalLM.from_pretrained({folder!r}).eval()
"""


def test_wanda_and_perplexity_in_the_window(qtbot, window, tmp_path):
    llama_folder(tmp_path)
    file = tmp_path / "llm.py"
    file.write_text(FACTORY.format(folder=str(tmp_path)), encoding="utf-8")
    window.request_load(f"{file}:build", trust=True, dataset=f"text:{PROSE}")
    wait_idle(qtbot, window, timeout=60000)
    s = window.state
    assert s.loaded.ref.endswith("llm.py:build") and s.dataset.name == "text:prose.txt"
    window.pruning_panel.set_settings(criterion="wanda")
    qtbot.waitUntil(lambda: s.criterion == "wanda" and bool(s.scores), timeout=60000)
    window.set_density(0.5)
    wait_idle(qtbot, window, timeout=60000)
    name = next(n for n in s.prunable if "q_proj" in n)
    assert s.masks[name].float().mean() == pytest.approx(0.5, abs=0.01)
    assert (s.masks[name].sum(1) == s.masks[name].shape[1] // 2).all()  # every row keeps half
    qtbot.mouseClick(window.training_panel.eval_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, window, timeout=60000)
    assert s.results and s.results[-1]["perplexity"] > 1
    assert "perplexity" in window.statusBar().currentMessage()
