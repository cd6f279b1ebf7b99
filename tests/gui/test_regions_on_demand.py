"""Regions on demand: an image shown without the active teacher's regions gets them computed in
the background, stored, and drawn; moving on cancels; the viewer says when every region of the
image is under the score slider instead of drawing nothing."""

from __future__ import annotations

import pytest

from tests.gui.loop_projects import copy_project, demo_project_dir, loop_state  # noqa: F401
from tests.metrics.conftest import install_teacher


@pytest.fixture
def viewer(qtbot, tmp_path, demo_project_dir, loop_state, settings, errors):
    from app.viewer.panel import ViewerPanel
    from engine.store import Store

    root = copy_project(demo_project_dir, tmp_path)
    store = Store.open(root)
    install_teacher(store, image_size=96, max_proposals=12)
    store.close()
    state = loop_state(root)
    qtbot.waitUntil(lambda: state.versions.teacher is not None, timeout=10000)
    panel = ViewerPanel(state, settings)
    qtbot.addWidget(panel)
    panel.resize(800, 600)
    panel.show()
    yield panel
    assert errors == []


def _detail(panel, image_id):
    from engine.store.queries import image_detail

    return image_detail(panel.state.workers.store, image_id, panel.state.versions)


def test_an_image_without_regions_gets_them_and_they_are_stored(qtbot, viewer):
    store = viewer.state.workers.store
    first, second = store.images.ids(split="train")[:2]
    assert not _detail(viewer, first).regions
    with qtbot.waitSignal(viewer.on_demand.ready, timeout=120000) as ready:
        viewer.show_detail(_detail(viewer, first))
        qtbot.waitUntil(lambda: "computing the regions" in viewer.version_label.text(),
                        timeout=30000)
    assert ready.args == [first]
    qtbot.waitUntil(lambda: bool(viewer.detail.regions), timeout=10000)
    assert store.regions.for_image(first, viewer.state.versions.teacher)
    text = viewer.version_label.text()
    assert text.startswith(f"regions of {viewer.state.versions.teacher}")
    viewer.slider.setValue(100)                     # nothing can reach 1.00: say so
    assert "every region is under 1.00" in viewer.version_label.text()
    # the best three are named, every one is in the tooltip, and a project of many classes never
    # makes the line (and so the window) wider than the panel
    under = viewer.version_label.toolTip().splitlines()[1:]
    assert len(under) == len({region.class_id for region in viewer.detail.regions}) > 0
    scores = [float(line.rsplit(" ", 1)[1]) for line in under]
    assert scores == sorted(scores, reverse=True)
    named = viewer.version_label.text().split("(", 1)[1]
    assert named.startswith(under[0]) and (len(under) <= 3 or f"and {len(under) - 3} more" in named)
    from app.viewer.panel import VERSION_LINE_MAX

    assert viewer.class_box.layout().minimumSize().width() <= VERSION_LINE_MAX
    # shown again: stored, so not computed again
    assert viewer.on_demand.request(_detail(viewer, first)) is False
    # moving on before it finishes cancels it; coming back computes it then
    assert viewer.on_demand.request(_detail(viewer, second)) is True
    viewer.show_detail(None)
    assert viewer.on_demand.busy_with is None
    with qtbot.waitSignal(viewer.on_demand.ready, timeout=120000):
        assert viewer.on_demand.request(_detail(viewer, second)) is True
