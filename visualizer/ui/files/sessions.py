"""Window <-> .pviz session (the format itself is visualizer.core.io.session).

The functions take the window as a :class:`SessionHost`: the few parts of it a session reads
and restores, so this module never imports the window.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from visualizer.core.io.session import (
    Session,
    TrustRequired,
    load_session,
)
from visualizer.core.io.session import save_session as write_session
from visualizer.core.models.trust import model_trust_reason, trust_reason
from visualizer.core.tasks import Step, sub
from visualizer.ui.jobs import actions
from visualizer.ui.shell.settings import recovery_path
from visualizer.ui.views import profile, sensitivity


class SessionHost(Protocol):
    """What a session needs of the main window."""

    state: object  # visualizer.ui.shell.state.AppState
    jobs: object  # visualizer.ui.jobs.runner.JobRunner
    views: dict  # view id -> widget (the heatmap's mode and layout are saved)
    model_panel: object  # its trust_box
    pruning_panel: object  # restored without re-ranking
    session_path: Path | None

    def show_error(self, text: str) -> None: ...
    def add_recent(self, path: str) -> None: ...
    def update_title(self) -> None: ...
    def statusBar(self): ...  # noqa: N802 (Qt API)
    def install_model(self, loaded, data, info: dict) -> None: ...
    def request_ranking(self, apply_mask: bool = True) -> None: ...


def capture(window: SessionHost) -> Session:
    """The window's state as a Session (references only: cheap on the GUI thread)."""
    s = window.state
    loaded = s.loaded
    heat = window.views.get("heatmap")
    view = {"selected": s.selected}
    if heat is not None:
        view.update(heatmap_mode=heat.mode, heatmap_layout=heat.layout_kind)
    # the graph's overlay choice (a graph tab never opened is not built for this)
    graph = None if "graph" in getattr(window.views, "pending", ()) else dict.get(window.views, "graph")
    if graph is not None and hasattr(getattr(graph, "view", None), "overlay_name"):
        view["graph_overlay"] = graph.view.overlay_name or graph.view.wanted_overlay
    over = window.views.get("overview")
    if over is not None:
        view.update(overview_mode=over.mode, overview_area=over.area)
    if (rows := sensitivity.session_state(window)) is not None:
        view["sensitivity"] = rows
    if (shown := profile.session_state(window)) is not None:
        view["profile"] = shown
    state = None
    if s.weights_modified and loaded is not None:
        state = {k: v.detach().cpu().clone() for k, v in loaded.model.state_dict().items()}
    return Session(
        model_ref=loaded.ref if loaded is not None else "",
        dataset=s.dataset_name,
        weights_path=None if loaded is None else loaded.weights if not _bundled(loaded) else None,
        trust=window.model_panel.trust_box.isChecked(),
        criterion=s.criterion,
        scope=s.scope,
        structure=s.structure,
        density=s.density,
        masks=None if s.masks is None else s.masks.copy(),  # may be a live view of the ranking
        snapshot=s.snapshot,
        model_state=state,
        results=list(s.results),
        baseline=s.baseline,
        view=view,
        device=getattr(s, "device", "auto"),
        **_data_settings(window),
    )


def _data_settings(window: SessionHost) -> dict:
    """The Data box and Weights choice as Session fields (Download is not saved: a file never
    grants the network)."""
    settings = window.model_panel.load_settings()
    options = settings["options"]
    return {"pretrained": bool(settings["pretrained"]), "image_size": options.image_size,
            "normalize": options.normalize}


def _bundled(loaded) -> bool:
    from visualizer.core.models.zoo import ZOO

    return loaded.ref in ZOO and (loaded.weights is None or "sample_models" in str(loaded.weights))


def save_session(window: SessionHost, path: Path, synchronous: bool | None = None) -> bool:
    """Save now; in a job unless ``synchronous`` (closing the window saves synchronously)."""
    if window.state.loaded is None:
        window.show_error("nothing to save: no model loaded")
        return False
    session = capture(window)
    path = Path(path)

    def done(_result) -> None:
        window.session_path = path
        window.state.set_dirty(False)
        window.add_recent(str(path))
        window.update_title()
        window.statusBar().showMessage(f"saved {path}", 4000)

    if synchronous is None:
        synchronous = window.jobs.synchronous
    if synchronous:
        try:
            write_session(session, path)
        except (OSError, ValueError) as exc:
            window.show_error(f"could not save {path.name}: {exc}")
            return False
        done(None)
        return True

    def job():
        yield Step(f"saving {path.name}", 0.1)
        write_session(session, path)
        return path

    window.jobs.submit("save", f"saving {path.name}", job, on_result=done)
    return True


def autosave(window: SessionHost) -> None:
    """Results (and the mask they belong to) to the recovery file, in the background."""
    if window.state.loaded is None or not window.state.results:
        return
    session = capture(window)
    path = recovery_path()

    def job():
        yield Step("autosave", 0.5)
        write_session(session, path)
        return path

    window.jobs.submit("autosave", "autosaving results", job)


def open_job(path: str, trust: bool = False, download: bool = False):
    """Read the session and load its model and data with its data options (worker thread).
    ``trust`` comes from the person (``--trust``, the question dialog), never from the file: a
    session whose model or ``file.py:factory`` dataset could run code is refused with
    :class:`TrustRequired` without it. ``download``: the window's Download box, never the file's."""
    from visualizer.core.data.external import DataOptions

    yield Step(f"reading {Path(path).name}", 0.05)
    session = load_session(path)
    reason = trust_reason(session)
    if reason is not None and not trust:
        raise TrustRequired(Path(path).name, reason)
    model_trust = trust and model_trust_reason(session.model_ref, session.weights_path) is not None
    options = DataOptions(download=download, image_size=session.image_size, normalize=session.normalize)
    loaded, data, info = yield from sub(
        actions.load_job(session.model_ref, session.weights_path, model_trust, session.dataset,
                         pretrained=session.pretrained, download=download, options=options),
        0.1, 0.9)
    if session.model_state is not None:
        from visualizer.core.models.loaders import apply_weights

        apply_weights(loaded.model, session.model_state, f"{Path(path).name}: weights")
        info.update(actions.model_info(loaded.model))
    for masks in (session.masks, session.snapshot):
        if masks is not None:
            masks.check(loaded.model)
    yield Step("done", 1.0)
    return session, (loaded, data, info)


def ask_trust(window, path: str, reason: str) -> bool:
    """Yes/No question (default No) naming the file and why opening it could run code."""
    from PySide6.QtWidgets import QMessageBox

    return trust_question(window, path, reason).exec() == QMessageBox.StandardButton.Yes


def trust_question(window, path: str, reason: str):
    from PySide6.QtWidgets import QMessageBox

    box = QMessageBox(window)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle("Run code from this file?")
    box.setText(f"Opening {Path(path).name} can run code: {reason}.")
    box.setInformativeText("Only say Yes if you trust where this file came from.")
    box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
    box.setDefaultButton(QMessageBox.StandardButton.No)
    box.setEscapeButton(QMessageBox.StandardButton.No)
    return box


def trust_job(path: str):
    """Job: why opening the session at ``path`` could run code, or None (worker thread: reading
    the session and probing the checkpoint it names can take seconds)."""
    yield Step(f"reading {Path(path).name}", 0.1)
    return trust_reason(load_session(path))


def open_session(window: SessionHost, path: str, trust: bool = False) -> None:
    """Open a session; when its model could run code, ask first (``trust``: already granted,
    e.g. by ``pruneviz gui FILE --trust``). Never trusts because the file says so. The session is
    read in a job; the question is asked when that job returns, on the GUI thread."""
    if trust:
        _start_open(window, path, True)
        return

    def decide(reason: str | None) -> None:
        if reason is not None and not ask_trust(window, path, reason):
            window.show_error(f"{Path(path).name}: not opened ({reason})")
            return
        _start_open(window, path, reason is not None)

    window.jobs.submit("open", f"reading {Path(path).name}", lambda: trust_job(path), on_result=decide)


def _start_open(window: SessionHost, path: str, trust: bool) -> None:
    """Load the session's model and data in a job and install them when it returns."""
    for kind in ("rank", "mask", "train", "eval", "load"):
        window.jobs.cancel(kind)
    download = bool(window.model_panel.load_settings()["download"])

    def done(result) -> None:
        session, (loaded, data, info) = result
        apply_session(window, session, loaded, data, info)
        window.session_path = Path(path) if not _is_recovery(path) else None
        window.add_recent(str(path)) if not _is_recovery(path) else None
        window.update_title()

    window.jobs.submit("load", f"opening {Path(path).name}", lambda: open_job(path, trust, download), on_result=done)


def _is_recovery(path: str) -> bool:
    try:
        return Path(path).resolve() == recovery_path().resolve()
    except OSError:
        return False


def show_data_settings(model_panel, session: Session) -> None:
    """Set the Weights choice and the Data box's image size and normalisation to the session's
    (the dataset itself shows once the model is installed)."""
    from visualizer.ui.panels.data_box import NO_SIZE

    model_panel.weights_choice.pretrained_box.setChecked(session.pretrained)
    box = model_panel.data
    box.size_box.setValue(session.image_size or NO_SIZE)
    box.normalize_box.setCurrentIndex(max(box.normalize_box.findData(session.normalize or ""), 0))


def apply_session(window: SessionHost, session: Session, loaded, data, info) -> None:
    s = window.state
    if session.masks is not None:
        info = dict(info, masks=session.masks)
    show_data_settings(window.model_panel, session)
    window.install_model(loaded, data, info)
    window.model_panel.show_dataset()  # a folder or a factory joins the Data list
    s.weights_modified = session.model_state is not None
    panel = window.pruning_panel
    panel._updating = True
    try:
        for box, val in ((panel.criterion_box, session.criterion), (panel.scope_box, session.scope),
                         (panel.structure_box, session.structure)):
            i = box.findData(val)
            if i >= 0:
                box.setCurrentIndex(i)
    finally:
        panel._updating = False
    panel._explain()
    s.criterion, s.scope, s.structure = session.criterion, session.scope, session.structure
    s.density = session.density
    panel._set_slider(session.density)
    panel._set_spin(session.density * 100)
    s.baseline = session.baseline if session.baseline is not None else s.baseline
    selector = getattr(window, "device_selector", None)
    if selector is not None:
        selector.set_device(session.device)  # a device this machine lacks shows "not available"
    else:
        s.device = session.device
    s.set_snapshot(session.snapshot)
    s.set_results(session.results)
    view = session.view or {}
    heat = window.views.get("heatmap")
    if heat is not None:
        if view.get("heatmap_layout") in ("flat", "kernels"):
            heat.layout_box.setCurrentIndex(heat.layout_box.findData(view["heatmap_layout"]))
        if view.get("heatmap_mode"):
            try:
                heat.set_mode(view["heatmap_mode"])
            except ValueError:
                pass
    graph = window.views.get("graph") if view.get("graph_overlay") else None
    if graph is not None:  # shown once that overlay is computed for the new model
        graph.view.set_overlay(view["graph_overlay"])
    over = window.views.get("overview")
    if over is not None:
        over.restore(view.get("overview_mode"), view.get("overview_area"))
    if view.get("selected") in s.params:
        s.select(view["selected"])
    if "sensitivity" in view:
        sensitivity.restore_session_state(window, view["sensitivity"])
    s.masks_changed.emit()
    if "profile" in view:  # after the mask: its λ_max columns belong to this one
        profile.restore_session_state(window, view["profile"])
    s.set_dirty(False)
    # scores for the heatmap and the slider: ranked in the background, keeping the saved mask
    window.request_ranking(apply_mask=False)
