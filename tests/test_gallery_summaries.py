"""xcam_widgets.gallery.summaries: per-class table and per-method distribution, hand-computed
on the 8-row table of test_gallery_table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from test_gallery_table import frame

from xcam_widgets.gallery import CLASS_SUMMARY_COLUMNS, Filter, GalleryTable, Sort, class_summary, distribution


@pytest.fixture
def table() -> GalleryTable:
    return GalleryTable(frame())


def test_class_summary_by_hand(table):
    summary = class_summary(table.select(), "energy")
    assert tuple(summary.columns) == CLASS_SUMMARY_COLUMNS
    # class 0: rows 0, 3, 7 (images a, a, e; a right, e wrong: 1 of 2 images, though 2 of 3 rows); energy 0.5, 0.5,
    # 0.1; pointing 1, 0, 0
    # class 1: rows 1, 2, 5, 6 (images b, c, b, c; b wrong, c unlabelled); energy NaN, .2, .9, .2; pointing -, -, 0, 1
    # row 4 has no class and is left out
    expected = pd.DataFrame(
        {
            "class": [0, 1],
            "class_name": ["cat", "dog"],
            "rows": [3, 4],
            "images": [2, 2],
            "accuracy": [0.5, 0.0],
            "metric_mean": [1.1 / 3, 1.3 / 3],
            "pointing_miss_rate": [2 / 3, 0.5],
        }
    )
    pd.testing.assert_frame_equal(summary, expected, check_dtype=False)


def test_class_summary_of_a_filtered_selection(table):
    summary = class_summary(table.select(Filter(methods=("cam",)), Sort("energy", True)), "energy")
    # cam: row 6 (class 1, c unlabelled, energy .2, pointing 1) and row 7 (class 0, e wrong, .1, 0)
    assert summary["class"].tolist() == [0, 1]
    assert summary["rows"].tolist() == [1, 1]
    assert summary["accuracy"].tolist()[0] == 0.0 and math.isnan(summary["accuracy"].tolist()[1])
    assert summary["metric_mean"].tolist() == pytest.approx([0.1, 0.2])
    assert summary["pointing_miss_rate"].tolist() == pytest.approx([1.0, 0.0])


def test_class_summary_by_label_without_metric(table):
    summary = class_summary(table.select(), by="label")
    # label -1: rows 2, 4, 6; label 0: rows 0, 3, 7; label 1: rows 1, 5
    assert summary["class"].tolist() == [-1, 0, 1]
    assert summary["rows"].tolist() == [3, 3, 2]
    assert summary["class_name"].isna().tolist() == [True, False, False]  # no class is named for -1
    assert summary["class_name"].tolist()[1:] == ["cat", "dog"]
    assert summary["metric_mean"].isna().all()


def test_class_summary_of_nothing(table):
    summary = class_summary(table.select(Filter(methods=("nope",))), "energy")
    assert len(summary) == 0 and tuple(summary.columns) == CLASS_SUMMARY_COLUMNS


def test_distribution_per_method_by_hand(table):
    result = distribution(table.select(), "energy", bins=2)
    assert result.groups == ("cam", "gradcam", "xgradcam")
    # cam rows 6, 7; gradcam rows 0, 1 (NaN), 2; xgradcam rows 3, 4 (NaN), 5
    expected = ([0.2, 0.1], [0.5, 0.2], [0.5, 0.9])
    for got, want in zip(result.values, expected):
        np.testing.assert_allclose(got, want)
    np.testing.assert_allclose(result.edges, [0.1, 0.5, 0.9])  # np.histogram: [0.1, 0.5), [0.5, 0.9]
    np.testing.assert_array_equal(result.counts, [[2, 0], [1, 1], [0, 2]])


def test_distribution_of_nothing_and_bad_arguments(table):
    empty = distribution(table.select(Filter(methods=("nope",))), "energy", bins=4)
    assert empty.groups == () and empty.counts.shape == (0, 4)
    np.testing.assert_allclose(empty.edges, np.linspace(0, 1, 5))
    with pytest.raises(ValueError, match="column 'method' is not numeric"):
        distribution(table.select(), "method")
    with pytest.raises(ValueError, match="unknown column 'nope'"):
        class_summary(table.select(), "nope")
    with pytest.raises(ValueError, match="bins must be a positive int"):
        distribution(table.select(), "energy", bins=0)
