"""Stimulus images matched to recordings by ``stimulus_id``.

Two forms, both read by :func:`load_stimuli`:

* a folder of images (``.png .jpg .jpeg .bmp .tif .tiff .gif``; other files and hidden files are
  ignored): the file stem is the stimulus_id; all images must have one size and one channel count
  (grayscale → 1 channel, RGB / RGBA / palette → 3, alpha dropped); 8-bit values are scaled to
  [0, 1]; images are sorted by file name.
* an ``.npz`` with ``images`` [N, C, H, W] (used as they are, as float32, not rescaled) and
  ``stimulus_id`` [N] (a str array; loaded without pickle), and optionally ``labels`` [N]
  (integer classes, for a task loss mixed into a dynamics fit).

>>> stim = load_stimuli("stimuli/")                     # doctest: +SKIP
>>> x = stim.select(stimulus_ids(recordings), "data.nc")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import NeuralDataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif")
_GRAY, _COLOR = ("1", "L", "LA"), ("P", "RGB", "RGBA")


@dataclass
class Stimuli:
    """Images and their ids; ``source`` names where they came from (for messages)."""

    images: torch.Tensor  # [N, C, H, W] float32
    ids: list[str]
    source: str
    labels: np.ndarray | None = None  # [N] integer classes, when the .npz has them

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[0] != len(self.ids):
            raise NeuralDataError(f"{self.source}: images must be [N, C, H, W] with N = {len(self.ids)} ids, "
                                  f"got shape {tuple(self.images.shape)}")
        if dup := sorted(k for k, n in Counter(self.ids).items() if n > 1):
            raise NeuralDataError(f"{self.source}: {len(dup)} duplicate stimulus_id(s): {_few(dup)}")

    def select(self, ids: Sequence[str], source: str = "recordings") -> torch.Tensor:
        """The images of ``ids`` in that order, [len(ids), C, H, W]. Ids without an image are an
        error naming ``source`` (where the ids came from); images not asked for are simply unused."""
        index = {s: i for i, s in enumerate(self.ids)}
        if missing := [s for s in ids if s not in index]:
            raise NeuralDataError(f"{len(missing)} stimulus_id(s) in {source} have no image in {self.source}: "
                                  f"{_few(missing)}")
        return self.images[torch.tensor([index[s] for s in ids], dtype=torch.long)]


def _few(items: Sequence[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (", ..." if len(items) > n else "")


def load_stimuli(path: str | os.PathLike) -> Stimuli:
    """Read a folder of images or an ``.npz`` (see module doc); errors name the path."""
    path = Path(path)
    if path.is_dir():
        return _load_folder(path)
    if not path.exists():
        raise NeuralDataError(f"{path}: no such folder or file")
    if path.suffix.lower() != ".npz":
        raise NeuralDataError(f"{path}: stimuli must be a folder of images or an .npz, not {path.suffix!r}")
    if not zipfile.is_zipfile(path):
        raise NeuralDataError(f"{path}: cannot read as .npz (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            if missing := [k for k in ("images", "stimulus_id") if k not in z.files]:
                raise NeuralDataError(f"{path}: .npz lacks array(s) {', '.join(missing)} "
                                      f"(it has: {', '.join(z.files) or 'none'})")
            images, ids = z["images"], z["stimulus_id"]
            labels = z["labels"] if "labels" in z.files else None
    except NeuralDataError:
        raise
    except Exception as e:  # zipfile / numpy errors, object arrays refused without pickle
        raise NeuralDataError(f"{path}: cannot read as .npz ({type(e).__name__}: {e})") from e
    if images.ndim != 4 or images.dtype.kind not in "biuf":
        raise NeuralDataError(f"{path}: 'images' must be a numeric [N, C, H, W] array, got {images.dtype} "
                              f"{images.shape}")
    if ids.dtype.kind != "U" or ids.shape != (images.shape[0],):
        raise NeuralDataError(f"{path}: 'stimulus_id' must be a str array of shape ({images.shape[0]},), got "
                              f"{ids.dtype} {ids.shape}")
    if images.shape[0] == 0:
        raise NeuralDataError(f"{path}: no images")
    tensor = torch.from_numpy(images.astype(np.float32))
    if not torch.isfinite(tensor).all():
        raise NeuralDataError(f"{path}: 'images' has NaN or inf values")
    if labels is not None and (labels.dtype.kind not in "iu" or labels.shape != (images.shape[0],)):
        raise NeuralDataError(f"{path}: 'labels' must be an integer array of shape ({images.shape[0]},), got "
                              f"{labels.dtype} {labels.shape}")
    return Stimuli(tensor, [str(s) for s in ids], str(path), labels)


def _load_folder(folder: Path) -> Stimuli:
    from PIL import Image

    files = sorted((p for p in folder.iterdir()
                    if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda p: p.name)
    if not files:
        raise NeuralDataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in the folder")
    stems = Counter(p.stem for p in files)
    if dup := [p.name for p in files if stems[p.stem] > 1]:
        raise NeuralDataError(f"{folder}: several images share a stimulus_id (file stem): {_few(dup, 10)}")

    arrays, modes = [], []
    for p in files:
        try:
            with Image.open(p) as img:
                if getattr(img, "n_frames", 1) > 1:
                    raise NeuralDataError(f"{p}: has {img.n_frames} frames; stimuli must be single images")
                mode = img.mode
                if mode in _GRAY:
                    img = img.convert("L")
                elif mode in _COLOR:
                    img = img.convert("RGB")
                else:
                    raise NeuralDataError(f"{p}: unsupported image mode {mode!r} "
                                          f"(supported: {', '.join(_GRAY + _COLOR)}, all 8-bit)")
                arr = np.asarray(img, dtype=np.uint8)
        except NeuralDataError:
            raise
        except Exception as e:  # PIL: unreadable or truncated file
            raise NeuralDataError(f"{p}: cannot read image ({type(e).__name__}: {e})") from e
        arrays.append(arr[:, :, None] if arr.ndim == 2 else arr)
        modes.append(mode)

    def shape(a: np.ndarray) -> str:
        return f"{a.shape[1]}x{a.shape[0]} {'gray' if a.shape[2] == 1 else 'color'}"

    common = Counter(shape(a) for a in arrays).most_common(1)[0][0]
    if odd := [f"{p.name} ({shape(a)}, mode {m})" for p, a, m in zip(files, arrays, modes) if shape(a) != common]:
        raise NeuralDataError(f"{folder}: all images must share one size and channel count; {len(odd)} differ "
                              f"from the most common ({common}, W x H): {_few(odd, 10)}")
    # NCHW built in NumPy: a permuted NHWC tensor with one channel counts as contiguous but keeps
    # channels-last strides, and convolutions then take other kernels (results differ by ~4e-8)
    images = torch.from_numpy(np.ascontiguousarray(np.stack(arrays).transpose(0, 3, 1, 2), dtype=np.float32) / 255.0)
    return Stimuli(images, [p.stem for p in files], str(folder))
