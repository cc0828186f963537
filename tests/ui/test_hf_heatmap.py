"""A GPT-2 folder opened in the window as a user does (hf:FOLDER typed into the model box, Load):
its Conv1D weights (stored in x out) are drawn with the axes named the right way round, and the
tied embedding is one layer."""

from __future__ import annotations

from tests.ui.conftest import wait_idle


def test_conv1d_axes_and_tied_weight(qtbot, window, hf_gpt2):
    panel = window.model_panel
    panel.model_box.setEditText(f"hf:{hf_gpt2}")
    panel.load_button.click()
    wait_idle(qtbot, window, timeout=60000)
    state = window.state
    assert state.loaded is not None and state.loaded.ref == f"hf:{hf_gpt2}"
    assert "pretrained: model.safetensors" in panel.summary.text()
    assert "transformer.wte.weight" in state.params and "lm_head.weight" not in state.params
    view = window.views["heatmap"]
    state.select("transformer.h.0.attn.c_attn.weight")  # 32 inputs x 96 outputs
    qtbot.waitUntil(lambda: view.title.text().startswith("<b>transformer.h.0.attn.c_attn.weight</b>"),
                    timeout=5000)
    assert view.plot.getAxis("bottom").labelText == "output"
    assert view.plot.getAxis("left").labelText.startswith("input")
    state.select("transformer.wte.weight")
    qtbot.waitUntil(lambda: view.title.text().startswith("<b>transformer.wte.weight</b>"), timeout=5000)
    assert view.plot.getAxis("bottom").labelText == "input"  # stored (out, in) as usual
