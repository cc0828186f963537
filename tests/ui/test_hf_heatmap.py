"""A GPT-2 folder in the window: its Conv1D weights (stored in x out) are drawn with the axes
named the right way round, and the tied embedding is one layer."""

from __future__ import annotations


def test_conv1d_axes_and_tied_weight(qtbot, hf_gpt2):
    from visualizer.core.tasks import run
    from visualizer.ui.jobs import actions
    from visualizer.ui.shell.window import MainWindow

    w = MainWindow(restore_layout=False)
    qtbot.addWidget(w)
    loaded, data, info = run(actions.load_job(f"hf:{hf_gpt2}", None, False, None))
    w.state.set_model(loaded, data, info)
    assert "transformer.wte.weight" in w.state.params and "lm_head.weight" not in w.state.params
    view = w.views["heatmap"]
    w.state.select("transformer.h.0.attn.c_attn.weight")  # 32 inputs x 96 outputs
    qtbot.waitUntil(lambda: view.title.text().startswith("<b>transformer.h.0.attn.c_attn.weight</b>"),
                    timeout=5000)
    assert view.plot.getAxis("bottom").labelText == "output"
    assert view.plot.getAxis("left").labelText.startswith("input")
    w.state.select("lm_head.weight" if "lm_head.weight" in w.state.params else "transformer.wte.weight")
    qtbot.waitUntil(lambda: view.title.text().startswith("<b>transformer.wte.weight</b>"), timeout=5000)
    assert view.plot.getAxis("bottom").labelText == "input"  # stored (out, in) as usual
    w.state.set_dirty(False)
    w.jobs.shutdown(1.0)
