"""The Gallery's Strategies view (issue 21, part 2) on a tiny finished run of the shortcut net: the one
Scattergl trace and its colours, selections that filter the thumbnails (checked against
`Discovery.assignments`), clear, cluster cards and their causal check, a click that opens the Explorer,
and the refusal of an unfinished run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from plotly.callbacks import Points
from plotly.colors import hex_to_rgb
from test_gallery_widget import GatedShapes, wait_until

import xcam_widgets as xw
from xcam_widgets.evaluation.specs import shapes_from_spec
from xcam_widgets.gallery import Filter, GalleryTable
from xcam_widgets.strategies.view_model import PALETTE, colours, selected_rows
from xcam_widgets.widgets.gallery import Gallery

SPEC = "shapes_shortcut:48"
DISCOVER = dict(min_size=8)


@pytest.fixture(scope="module")
def gallery():
    torch.set_num_threads(1)
    gallery = Gallery("shapes_shortcut", SPEC, methods="xgradcam", metrics=["energy"], page_size=96, background=False)
    yield gallery
    gallery.close()


@pytest.fixture(scope="module")
def view(gallery):
    view = gallery.strategies(**DISCOVER)
    view.wait()
    return view


@pytest.fixture(scope="module")
def reference(gallery):
    """The core module called directly: the independent reference for what the view shows."""
    return xw.discover(gallery, **DISCOVER)


@pytest.fixture(autouse=True)
def fresh(gallery, view):
    view.clear_selection()
    gallery.filter()
    yield


def page_rows(gallery: Gallery) -> list[int]:
    """The rows on the Gallery's page (one page: 96 per page for 48 rows), and on its tiles."""
    rows = gallery.view.page.rows.tolist()
    assert [t.row for t in gallery.tiles if t.row is not None] == rows and gallery.view.page.count == 1
    return sorted(rows)


def members(reference, cluster: int) -> list[int]:
    a = reference.assignments
    return sorted(a.loc[a["cluster"] == cluster, "row"].tolist())


def drawn_colours(scale, at: np.ndarray) -> list[tuple[int, ...]]:
    """What plotly.js draws at positions `at` of a colour scale: linear in RGB between its stops."""
    where = [float(s) for s, _ in scale]
    stops = np.array([hex_to_rgb(c) for _, c in scale], dtype=float)
    channels = [np.interp(at, where, stops[:, k]) for k in range(3)]
    return [tuple(int(round(c[i])) for c in channels) for i in range(len(at))]


def test_the_view_shows_the_discovery_in_one_scattergl_trace(view, reference):
    assert view.status.value.startswith("48 rows of xgradcam") and view.progress.bar_style == "success"
    pd.testing.assert_frame_equal(view.discovery.assignments, reference.assignments)  # deterministic for a seed
    assert len(view.figure.data) == 1 and view.figure.data[0].type == "scattergl"
    trace = view.figure.data[0]
    a = reference.assignments
    np.testing.assert_allclose(trace.x, a["x"].to_numpy(np.float32))
    np.testing.assert_allclose(trace.y, a["y"].to_numpy(np.float32))
    assert list(trace.customdata) == a["row"].tolist() and trace.hovertemplate.count("%{") == 1


def test_colour_modes_give_each_point_its_cluster_class_or_metric(view, reference, gallery):
    trace = view.figure.data[0]
    table = gallery.table.frame.set_index("row").loc[reference.assignments["row"]]
    assert view.colour.value == "cluster"
    clusters = reference.assignments["cluster"].to_numpy()
    assert trace.marker.color.tolist() == clusters.tolist()
    for mode, ids in (("cluster", clusters), ("class", table["class"].to_numpy())):
        view.colour.value = mode
        assert trace.marker.color.tolist() == ids.tolist()
        scale, low, high = trace.marker.colorscale, trace.marker.cmin, trace.marker.cmax
        drawn = drawn_colours(scale, (ids - low) / (high - low))
        wanted = ["#bbbbbb" if v < 0 else PALETTE[v % len(PALETTE)] for v in ids]  # grey: not clustered
        assert drawn == [hex_to_rgb(c) for c in wanted]
    assert dict(zip(trace.marker.colorbar.tickvals, trace.marker.colorbar.ticktext))[2] == "triangle"
    view.colour.value = "energy"
    np.testing.assert_allclose(trace.marker.color, table["energy"].to_numpy(np.float32))
    assert trace.marker.colorscale[0][1] != trace.marker.colorscale[-1][1]  # a continuous scale
    assert (trace.marker.cmin, trace.marker.cmax) == pytest.approx((table["energy"].min(), table["energy"].max()))
    assert len(view.figure.data) == 1
    view.colour.value = "cluster"
    with pytest.raises(ValueError, match="colour mode must be one of"):
        colours(view.points, "nope")


def test_the_group_menu_lists_too_small_groups_and_cards_follow_the_rank(view, reference):
    groups = reference.groups
    labels = dict((g, label) for label, g in view.group.options)
    assert set(labels) == set(groups["group"])
    for g in groups.itertuples():
        assert ("too few rows" in labels[g.group]) == (g.status == "too few rows"), labels[g.group]
    for g in groups[groups["status"] == "clustered"]["group"]:
        view.group.value = int(g)
        clusters = reference.clusters[reference.clusters["group"] == g].sort_values("rank")
        assert list(view.cards) == clusters["cluster"].tolist()
        first = view.cards[int(clusters["cluster"].iloc[0])]
        summary = first.children[0].value
        assert f"size {int(clusters['size'].iloc[0])}" in summary and "rank 1 of" in summary
        k = int(groups.loc[groups["group"] == g, "suggested_k"].iloc[0])
        assert f"suggested k = {k}" in view.group_label.value and f"suggested k {k}" in summary
        assert first.crops.value.count("<img ") == len(reference.prototypes[first.cluster]) > 0
    too_few = int(groups.loc[groups["status"] == "too few rows", "group"].iloc[0])
    view.group.value = too_few
    assert view.cards == {} and "too few rows" in view.group_label.value


def test_a_card_selects_its_cluster_and_clear_restores_the_filter(view, reference, gallery):
    gallery.filter(range=("energy", 0.0, 0.02))
    before = page_rows(gallery)
    assert 0 < len(before) < 48
    for cluster in reference.clusters["cluster"].astype(int):
        view.group.value = int(reference.clusters.loc[reference.clusters["cluster"] == cluster, "group"].iloc[0])
        view.cards[cluster].select_button.click()
        assert page_rows(gallery) == members(reference, cluster)
        assert gallery.controls.selection_note.value == f"<b>{len(members(reference, cluster))} selected rows</b>"
        assert sorted(view.points["row"][list(view.figure.data[0].selectedpoints)]) == members(reference, cluster)
    view.clear_button.click()
    assert page_rows(gallery) == before and gallery.view.filter.ranges[0].column == "energy"
    assert gallery.controls.range_column.value == "energy" and gallery.controls.selection_note.value == ""
    assert view.figure.data[0].selectedpoints is None


def test_a_lasso_on_the_scatter_filters_the_thumbnails(view, reference, gallery):
    trace = view.figure.data[0]
    a = reference.assignments
    cluster = int(reference.clusters["cluster"].iloc[-1])
    inside = np.flatnonzero(a["cluster"].to_numpy() == cluster).tolist()
    trace._dispatch_on_selection(Points(point_inds=inside, trace_index=0), None)
    assert page_rows(gallery) == members(reference, cluster)
    trace._dispatch_on_selection(Points(point_inds=[3, 7, 11], trace_index=0), None)
    assert page_rows(gallery) == sorted(a["row"].iloc[[3, 7, 11]].tolist()) != members(reference, cluster)
    chosen = a["row"].iloc[[3, 7, 11]].tolist()
    wanted = gallery.table.record(chosen[0])["class"]
    gallery.controls.classes.value = int(wanted)  # the menus narrow the selection
    assert page_rows(gallery) == sorted(r for r in chosen if gallery.table.record(r)["class"] == wanted)
    trace._dispatch_on_deselect(Points(point_inds=[], trace_index=0))
    assert page_rows(gallery) == list(range(48)) and gallery.view.filter == Filter()


def test_selected_rows_and_select_rows_refuse_bad_input(view, gallery):
    with pytest.raises(ValueError, match=r"point indices must lie in \[0, 48\)"):
        selected_rows(view.points, [48])
    with pytest.raises(ValueError, match=r"rows \[100\] are not in the table"):
        gallery.select_rows([1, 100])
    with pytest.raises(ValueError, match="rows must be row keys"):
        Filter(rows=["a"])
    assert gallery.view.filter == Filter() and page_rows(gallery) == list(range(48))


def test_a_row_set_applies_before_twins_are_merged():
    """Rows 0-3: gradcam (kept) and xgradcam (merged) of images 0 and 1. Merging alone hides the xgradcam
    rows 2, 3; a row set of the xgradcam rows leaves their gradcam twins out, so nothing hides them."""
    frame = pd.DataFrame(
        {"row": [0, 1, 2, 3], "method": ["gradcam"] * 2 + ["xgradcam"] * 2, "layer": "l", "image": [0, 1, 0, 1]}
    ).assign(**{"class": 0})
    table = GalleryTable(frame)
    twin = (("gradcam", "xgradcam", "l"),)
    assert table.select(Filter(merge=twin)).frame()["row"].tolist() == [0, 1]
    assert table.select(Filter(rows=[2, 3], merge=twin)).frame()["row"].tolist() == [2, 3]
    assert table.select(Filter(rows=[0, 3], merge=twin)).frame()["row"].tolist() == [0, 3]
    assert table.select(Filter(rows=np.array([3, 1, 3]))).frame()["row"].tolist() == [1, 3]
    assert table.select(Filter(rows=[])).frame()["row"].tolist() == []


def test_a_click_on_a_point_opens_the_explorer_on_that_rows_image(view, reference, gallery):
    point = 5
    row = int(reference.assignments["row"].iloc[point])
    view.figure.data[0]._dispatch_on_click(Points(point_inds=[point], trace_index=0), None)
    explorer = gallery.explorer
    assert explorer is not None and gallery.explorer_row == row
    explorer.wait()
    record = gallery.table.record(row)
    image = shapes_from_spec(SPEC).images[int(record["image"])]
    np.testing.assert_array_equal(
        explorer.session.display, (image.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    )
    assert (explorer.method.value, explorer.target.value) == ("xgradcam", int(record["class"]))


def test_the_causal_check_button_matches_discovery_causal_check(view, reference, monkeypatch):
    group = int(reference.clusters["group"].iloc[0])
    view.group.value = group
    cluster = list(view.cards)[0]
    card = view.cards[cluster]
    card.causal_button.click()
    view.wait()
    direct = reference.causal_check(cluster)
    pd.testing.assert_frame_equal(card.check.table, direct.table)
    assert (card.check.effect, card.check.contrast) == pytest.approx((direct.effect, direct.contrast))
    assert f"effect {direct.effect:.3f}" in card.result.value
    status = view.status.value

    def boom(*args, **kwargs):
        raise RuntimeError("the model is gone")

    other = view.cards[list(view.cards)[1]]
    monkeypatch.setattr(view.discovery, "causal_check", boom)
    other.causal_button.click()
    view.wait()
    assert "RuntimeError" in other.result.value and "the model is gone" in other.result.value
    assert view.status.value == status and "effect" in card.result.value  # the rest of the view is as it was
    other.select_button.click()
    assert gallery_rows_of(view) == members(reference, other.cluster)


def gallery_rows_of(view) -> list[int]:
    return page_rows(view.gallery)


def test_an_unfinished_run_is_refused_with_a_clear_message():
    data = GatedShapes(8, gate_at=4)
    gallery = Gallery("shapes_gap", data, methods=["xgradcam"], metrics=["average_drop"], batch_size=4)
    try:
        wait_until(lambda: gallery.progress.value == 4)
        with pytest.raises(ValueError, match=r"still running \(4 of 8 images\): wait for it"):
            gallery.strategies()
        gallery.strategies_button.click()
        assert "needs a finished run" in gallery.status.value and gallery.strategies_view is None
        assert gallery.strategies_box.children == ()
    finally:
        data.gate.set()
        gallery.close()


def test_closing_leaves_no_live_box_holding_a_closed_widget(gallery):
    """A reloading page asks for every live widget's state; one live box holding a closed widget makes that
    fail for the whole kernel. Cards rebuilt for another group and a closed view must leave none."""
    from ipywidgets.widgets.widget import _instances

    view = gallery.strategies(**DISCOVER)
    view.wait()
    groups = [value for _, value in view.group.options]
    for group in groups[1:] + groups[:1]:  # each change rebuilds the cards
        view.group.value = group
    for widget in list(_instances.values()):
        widget.get_state()  # raises AttributeError on a closed child
    view.close()
    for widget in list(_instances.values()):
        widget.get_state()


def test_the_causal_verdict_rests_on_the_effect_and_the_contrast_says_how_specific():
    """A group where every image carries the mark: removing it hurts members (effect > 0) as much as the
    rest (contrast ~ 0): the model uses it, not only in this cluster (the card said "no clear sign")."""
    from xcam_widgets.strategies import CausalCheck
    from xcam_widgets.strategies.view_model import causal_html

    table = pd.DataFrame({"who": ["members"], "removed": ["evidence"], "score_drop": [1.7]})
    used_everywhere = causal_html(CausalCheck(table, "occlude", 0.1, [], effect=1.711, contrast=-0.008))
    specific = causal_html(CausalCheck(table, "occlude", 0.1, [], effect=1.2, contrast=1.1))
    unused = causal_html(CausalCheck(table, "occlude", 0.1, [], effect=-0.01, contrast=0.5))
    assert "uses this evidence, as much in the rest of the class" in used_everywhere
    assert "uses this evidence, and it matters more to these images" in specific
    assert "no sign that the model uses this evidence" in unused


def test_discover_on_a_gallery_keeps_its_bundles_preprocess(gallery):
    """`xw.discover(gallery)` takes the Gallery's bundle (its preprocess with it), not the bare module: a run
    on images other than a shapes spec needs the preprocess for prototype crops and the causal check."""
    from xcam_widgets.strategies.selection import resolve

    assert resolve(gallery).model is gallery.bundle and gallery.bundle.preprocess is not None
