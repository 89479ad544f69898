"""Issue 25, items 2 and 9: a resumed run checks what its rows depend on (weights, preprocess,
images) rather than names, the weights may not change during a run, and one damaged part file
costs one batch, named, not the run."""

from __future__ import annotations

import copy
import json
import os
import threading

import pandas as pd
import pytest
import torch
from PIL import Image
from test_evaluation_robustness import KWARGS, CountingBatches, write_pngs
from torch.utils.data import Dataset
from torchvision import transforms

import xcam_widgets as xw
from xcam_widgets.evaluation import evaluate, open_result, run_paths
from xcam_widgets.evaluation.fingerprint import describe_preprocess, weights_hash
from xcam_widgets.evaluation.parts import MANIFEST
from xcam_widgets.shapes.dataset import make_shapes

pytestmark = pytest.mark.usefixtures("one_thread")
START_AFRESH = r"overwrite=True \(--overwrite\) to start afresh"


@pytest.fixture(scope="module")
def bundle(random_shapes_vgg: xw.ModelBundle) -> xw.ModelBundle:
    return random_shapes_vgg


@pytest.fixture
def own_bundle(bundle):
    """A copy whose weights a test may change."""
    return copy.deepcopy(bundle)


def parts_of(out):
    return sorted(run_paths(out).parts.glob("batch-*.npz"))


# --- item 2: the fingerprint ---------------------------------------------------------------------


def test_the_weights_hash_follows_the_bytes_not_the_objects(bundle):
    twin = copy.deepcopy(bundle.model)
    assert weights_hash(twin) == weights_hash(bundle.model)
    fresh = xw.load_model("shapes_vgg", pretrained=False, device="cpu").model
    assert weights_hash(fresh) != weights_hash(bundle.model)
    fresh.load_state_dict(bundle.model.state_dict())
    assert weights_hash(fresh) == weights_hash(bundle.model)
    weight = next(twin.parameters())
    with torch.no_grad():  # one element, one ulp: through .data, which no version counter sees
        weight.data.view(-1)[0] = torch.nextafter(weight.data.view(-1)[0], torch.tensor(float("inf")))
    assert weights_hash(twin) != weights_hash(bundle.model)
    assert weights_hash(copy.deepcopy(bundle.model).double()) != weights_hash(bundle.model)


def preprocess_function(image):
    return transforms.functional.to_tensor(image)


def test_a_preprocess_is_described_by_its_settings_or_its_name():
    compose = transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.25] * 3)])
    assert describe_preprocess(compose) == repr(compose) and "std=[0.25, 0.25, 0.25]" in repr(compose)
    described = describe_preprocess(preprocess_function)
    assert described == f"{__name__}.preprocess_function (a callable without a repr: changes inside it cannot be seen)"
    assert "0x" not in describe_preprocess(lambda image: image)  # stable from one process to the next


def test_resume_refuses_weights_changed_in_place_and_says_so(own_bundle, tmp_path, monkeypatch):
    out = tmp_path / "results.csv"
    first, _ = evaluate(own_bundle, "shapes:3", out=out, **KWARGS)
    with torch.no_grad():
        next(own_bundle.model.parameters()).mul_(1.5)
    counter = CountingBatches(monkeypatch)
    with pytest.raises(ValueError, match=rf"changed since: the model's weights .*{START_AFRESH}") as caught:
        evaluate(own_bundle, "shapes:3", out=out, **KWARGS)
    assert "preprocess" not in str(caught.value) and "image" not in str(caught.value)
    assert counter.calls == 0
    pd.testing.assert_frame_equal(open_result(out).table, first)  # untouched
    fresh, _ = evaluate(own_bundle, "shapes:3", out=out, overwrite=True, **KWARGS)
    assert counter.calls == 2 and not fresh["score"].equals(first["score"])


def test_resume_refuses_another_preprocess(bundle, tmp_path):
    write_pngs(tmp_path / "imgs", 2)
    out = tmp_path / "results.csv"
    plain = transforms.Compose([transforms.ToTensor()])
    shifted = transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)])
    evaluate(bundle.model, tmp_path / "imgs", preprocess=plain, out=out, **KWARGS)
    said = r"changed since: the preprocess \('Compose\(\\n    ToTensor\(\)\\n\)' there, 'Compose\(.*Normalize\(mean"
    with pytest.raises(ValueError, match=said):
        evaluate(bundle.model, tmp_path / "imgs", preprocess=shifted, out=out, **KWARGS)


def test_resume_names_the_image_files_that_changed(bundle, tmp_path, monkeypatch):
    folder = tmp_path / "imgs"
    write_pngs(folder, 3)
    out = tmp_path / "results.csv"
    evaluate(bundle, folder, out=out, **KWARGS)
    stat = os.stat(folder / "img1.png")
    Image.fromarray((make_shapes(1, seed=99).images[0].permute(1, 2, 0) * 255).byte().numpy()).save(folder / "img1.png")
    os.utime(folder / "img1.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # replaced a second later
    counter = CountingBatches(monkeypatch)
    with pytest.raises(ValueError, match=rf"image files changed \(size or mtime\): 'img1.png'\. .*{START_AFRESH}"):
        evaluate(bundle, folder, out=out, **KWARGS)
    assert counter.calls == 0
    evaluate(bundle, folder, out=out, overwrite=True, **KWARGS)
    assert counter.calls == 2
    evaluate(bundle, folder, out=out, **KWARGS)  # the same files, touched by nothing: resumed, nothing computed
    assert counter.calls == 2


class Pairs(Dataset):
    """(image, label) pairs with the labels given; the images: 4 shapes images, repeated."""

    def __init__(self, labels, seed=5):
        self.images, self.labels = make_shapes(4, seed=seed).images, list(labels)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index % 4], self.labels[index]


class Targeted(Pairs):
    """The same with a torchvision-style `targets`, which is hashed whole, without loading images."""

    @property
    def targets(self):
        return torch.tensor(self.labels)


def test_resume_refuses_another_dataset_of_the_same_length(bundle, tmp_path):
    out = tmp_path / "results.csv"
    in_fours = {**KWARGS, "batch_size": 4}  # the items of the first batch are checked
    evaluate(bundle, Pairs([0, 1, 2, 3]), out=out, **in_fours)
    with pytest.raises(ValueError, match=r"the Dataset's items at positions \[1, 2\] \(pixels or label"):
        evaluate(bundle, Pairs([0, 2, 1, 3]), out=out, **in_fours)
    with pytest.raises(ValueError, match=r"the Dataset's items at positions \[0, 1\] "):
        evaluate(bundle, Pairs([0, 1, 2, 3], seed=6), out=out, **KWARGS)  # a resume in twos checks two
    # Labels beyond the sampled items: seen through `targets` (its repr elides the middle of a long tensor).
    many = [i % 5 for i in range(2000)]
    other = many[:1000] + [(many[1000] + 1) % 5] + many[1001:]
    assert repr(torch.tensor(many)) == repr(torch.tensor(other))
    out = tmp_path / "many.csv"
    stop = threading.Event()
    stop.set()  # claims `out` and stops before the first batch
    evaluate(bundle, Targeted(many), out=out, stop=stop, **KWARGS)
    with pytest.raises(ValueError, match=r"the Dataset's labels \(its `targets`\)"):
        evaluate(bundle, Targeted(other), out=out, stop=stop, **KWARGS)


def test_a_run_without_a_fingerprint_is_not_resumed(bundle, tmp_path, monkeypatch):
    """An older version's run: its rows cannot be checked, so it is reopened, never resumed."""
    out = tmp_path / "results.csv"
    first, _ = evaluate(bundle, "shapes:3", out=out, **KWARGS)
    manifest_file = run_paths(out).parts / MANIFEST
    manifest = json.loads(manifest_file.read_text())
    del manifest["meta"]["fingerprint"]
    manifest["model_and_images"] = repr(("shapes_vgg", "shapes:3"))
    manifest_file.write_text(json.dumps(manifest))
    counter = CountingBatches(monkeypatch)
    with pytest.raises(
        ValueError, match=rf"older xcam-widgets .* no fingerprint .*open_result, or pass {START_AFRESH}"
    ):
        evaluate(bundle, "shapes:3", out=out, **KWARGS)
    pd.testing.assert_frame_equal(open_result(run_paths(out).parts).table, first)
    assert counter.calls == 0


def test_weights_changed_during_a_run_do_not_make_a_complete_table(own_bundle, tmp_path):
    """As a training thread would, between two batches, through `.data` (no version counter sees it)."""
    out = tmp_path / "results.csv"
    stop = threading.Event()
    evaluate(own_bundle, "shapes:6", out=out, stop=stop, on_rows=lambda rows, maps: stop.set(), **KWARGS)
    kept = parts_of(out)
    assert len(kept) == 1  # a first run stopped after one batch: the weights it used are the fingerprint's
    weight = next(own_bundle.model.parameters())
    batches = []

    def train(rows, maps):
        batches.append(len(rows))
        if len(batches) == 2:  # after the resumed rows and the first new batch
            weight.data.mul_(2)

    with pytest.raises(
        RuntimeError, match=r"weights changed during the run.*its 2 batch\(es\) were deleted .*earlier ones stay"
    ):
        evaluate(own_bundle, "shapes:6", out=out, on_rows=train, **KWARGS)
    assert not out.exists() and not run_paths(out).meta.exists()
    assert parts_of(out) == kept and len(batches) == 3  # this run's two batches went, the first run's stayed
    with torch.no_grad():
        weight.data.div_(2)  # the weights of the fingerprint again: the run resumes from the kept batch
    expected, _ = evaluate(own_bundle, "shapes:6", **KWARGS)
    table, _ = evaluate(own_bundle, "shapes:6", out=out, **KWARGS)
    pd.testing.assert_frame_equal(table, expected)


# --- item 9: a damaged part file ------------------------------------------------------------------


def test_a_damaged_part_is_named_reopened_without_it_and_recomputed_alone(bundle, tmp_path, monkeypatch):
    out = tmp_path / "results.csv"
    expected, _ = evaluate(bundle, "shapes:5", out=out, **KWARGS)
    files = parts_of(out)
    assert len(files) == 3
    files[1].write_bytes(files[1].read_bytes()[:200])  # cut short, as a full disk or a bad copy leaves it
    name = files[1].name
    with pytest.warns(RuntimeWarning, match=rf"{name}' \(BadZipFile.*2 image\(s\) at positions 2 \(rows 2-2\), 3 "):
        reopened = open_result(run_paths(out).parts)
    assert not reopened.complete and reopened.table["row"].tolist() == [0, 1, 4]
    pd.testing.assert_frame_equal(reopened.table, expected.iloc[[0, 1, 4]].reset_index(drop=True))
    counter = CountingBatches(monkeypatch)
    with pytest.warns(RuntimeWarning, match=rf"part .*{name}' is damaged \(BadZipFile.*computed again"):
        table, _ = evaluate(bundle, "shapes:5", out=out, **KWARGS)
    assert counter.positions == [2, 3]  # just the damaged batch
    pd.testing.assert_frame_equal(table, expected)
    assert (run_paths(out).parts / (name + ".damaged")).exists()  # kept aside, for a look
    pd.testing.assert_frame_equal(open_result(run_paths(out).parts).table, expected)
    # The run's other files, damaged, are named too.
    paths = run_paths(out)
    paths.maps.write_bytes(paths.maps.read_bytes()[:100])
    with pytest.raises(ValueError, match=rf"{paths.maps.name}' is damaged \(BadZipFile.*open_result\("):
        open_result(out)
    (paths.parts / MANIFEST).write_text('{"format": 2, "meta')
    with pytest.raises(ValueError, match=rf"{MANIFEST}' is damaged .*{START_AFRESH}"):
        evaluate(bundle, "shapes:5", out=out, **KWARGS)
