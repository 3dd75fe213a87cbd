"""A compiled tnnspec network as a Brain-Score ``BrainModel`` (neural recordings with time bins).

Brain-Score (``brainscore_vision``) treats a model as an experimental subject: a benchmark calls
``start_recording(region, time_bins)``, then ``look_at(stimuli)`` and gets a ``NeuroidAssembly``
with dims ``presentation × neuroid × time_bin``. :class:`TnnspecBrainModel` implements that
interface on top of :func:`~tnnspec.neural.activations.area_activity` and
:class:`~tnnspec.neural.timemap.TimeMap`; it needs neither ``brainscore_vision`` nor ``brainio``:

>>> model = TnnspecBrainModel(net, regions={"IT": "IT"}, latency_ms={"IT": 50})   # doctest: +SKIP
>>> model.start_recording("IT", [(70, 170)])                                       # doctest: +SKIP
>>> assembly = model.look_at(stimulus_set)                                          # doctest: +SKIP

:func:`brain_model` returns the same object as an instance of a class that also derives from
``brainscore_vision.model_interface.BrainModel`` when that package imports (this module never
imports it by itself).

What a recording is
    ``start_recording(region, bins)`` picks the graph area mapped to ``region`` (``regions=``, else
    the spec's ``neural.regions``, else an area named ``V1``/``V2``/``V4``/``IT``) and that region's
    latency (``latency_ms=``, else the spec's ``neural.regions.<region>.latency_ms``, else 0). The
    network is unrolled for the fewest steps that cover the latest bin, and each bin is the
    overlap-weighted average of the model steps it covers (docs/neural.md; before the latency the
    model is at rest and contributes zeros). Every bin is returned, also a single one (the
    interface allows dropping a lone ``time_bin`` dim; benchmarks squeeze it themselves).

Stimuli and preprocessing
    Brain-Score hands over file paths of images of any size, so this is the one place in tnnspec
    that preprocesses: each image is read with PIL, converted to the input's channels (``L`` for a
    1-channel input, so colour images become luminance with PIL's ITU-R 601-2 weights; ``RGB`` for
    a 3-channel input, so grey images repeat over the channels; alpha is dropped), resized to the
    input's H×W with PIL's bilinear filter (which also low-passes when shrinking) when its size
    differs, and scaled from 8 bits to [0, 1]. Nothing is normalised or cropped (Brain-Score's
    ``place_on_screen`` already placed the stimuli for :meth:`visual_degrees`). For a spec whose
    input is a vector ``[D]``, images are ``image_size``² grey (or RGB), flattened.

Trials
    The model is deterministic. As in Brain-Score's own activation extractor, ``number_of_trials``
    does not multiply the presentations (benchmarks pass e.g. 50 for stochastic models); with
    ``require_variance=True`` every stimulus is presented ``number_of_trials`` times (stimulus by
    stimulus, with a ``repetition`` coordinate) and the repeats are identical.
"""

from __future__ import annotations

import functools
import importlib
import math
import os
from collections.abc import Mapping

import numpy as np

from .errors import NeuralDataError

#: Brain-Score's recording targets (``BrainModel.RecordingTarget``), the default region names.
RECORDING_TARGETS = ("V1", "V2", "V4", "IT")
#: Brain-Score's task names (``BrainModel.Task``); only ``passive`` is supported.
TASKS = ("passive", "label", "probabilities", "odd_one_out")
#: DataFrame columns that may hold an image's path when the frame has no ``get_stimulus``.
PATH_COLUMNS = ("image_file_path", "filename", "stimulus_path")
_UNSUPPORTED_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


class TnnspecBrainModel:
    """A compiled network (``tnnspec.compile(spec)``) behind Brain-Score's ``BrainModel``
    interface: passive task, neural recordings from the area mapped to a region, in time bins.

    :param net: the compiled :class:`~tnnspec.compile.Network` (torch.compile / DDP wrappers are
        unwrapped for its spec); it must already be on ``device``.
    :param regions: recorded region -> the graph's area; default the spec's ``neural.regions``,
        else every area named like a Brain-Score region (V1, V2, V4, IT).
    :param latency_ms: ms from stimulus onset to the model's step 0: one number for every region,
        or a dict region -> ms; regions not in the dict take the spec's ``neural.regions`` latency
        (which must then be a single value, not a list of candidates), else 0.
    :param image_size: side of the images fed to a vector input ``[D]``; for an image input
        ``[C, H, W]`` it may only repeat H (= W): the compiled network takes one input size.
    :param visual_degrees: the field of view the input covers (Brain-Score scales stimuli to it).
    :param identifier: the model's name in Brain-Score (its results are cached under it: make it
        unique per set of weights); default ``tnnspec-<spec name>``.
    :param device: where the images go; the network is not moved.
    :param batch_size: images per forward pass.
    """

    class Task:
        """The task names of ``BrainModel.Task`` (only ``passive`` is supported)."""

        passive = "passive"
        label = "label"
        probabilities = "probabilities"
        odd_one_out = "odd_one_out"

    class RecordingTarget:
        """The region names of ``BrainModel.RecordingTarget``."""

        V1 = "V1"
        V2 = "V2"
        V4 = "V4"
        IT = "IT"

    def __init__(self, net, *, regions: Mapping[str, str] | None = None,
                 latency_ms: float | Mapping[str, float] | None = None, image_size: int | None = None,
                 visual_degrees: float = 8.0, identifier: str | None = None, device="cpu", batch_size: int = 64):
        from ..train.evaluate import DataError, single_input, unwrap

        inner = unwrap(net)
        spec = getattr(inner, "spec", None)
        if spec is None or not hasattr(inner, "areas"):
            raise ValueError("net must be a compiled tnnspec network (tnnspec.compile(spec)), got "
                             f"{type(net).__name__}")
        self._net = net
        self._spec = spec
        self._areas = list(inner.areas)
        shapes = getattr(getattr(inner, "plan", None), "shapes", None)
        self._shapes = dict(shapes.output) if shapes is not None else {}
        self._neural_regions = dict(spec.neural.regions) if spec.neural is not None else {}
        self.region_area: dict[str, str] = self._resolve_regions(regions)
        self._latency_arg = self._check_latency(latency_ms)
        try:
            self._input_name, inp = single_input(spec)
        except DataError as exc:
            raise ValueError(str(exc)) from None
        self._channels, self._height, self._width = self._geometry(list(inp.shape), image_size)
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not (isinstance(visual_degrees, (int, float)) and visual_degrees > 0):
            raise ValueError(f"visual_degrees must be a positive number, got {visual_degrees!r}")
        self._check_device(net, device)
        self._visual_degrees = visual_degrees
        self._identifier = identifier or f"tnnspec-{spec.name}"
        self._device = device
        self._batch_size = batch_size
        self._task = self.Task.passive
        self._recording: dict | None = None

    # ------------------------------------------------------------------ setup
    def _resolve_regions(self, regions) -> dict[str, str]:
        if regions is not None:
            if not isinstance(regions, Mapping):
                raise ValueError(f"regions must be a dict region -> area, got {type(regions).__name__}")
            if unknown := {r: a for r, a in regions.items() if a not in self._areas}:
                raise ValueError(f"regions: unknown area(s) {unknown}; the graph has {self._areas}")
            return {str(r): str(a) for r, a in regions.items()}
        if self._neural_regions:
            return {r: reg.area for r, reg in self._neural_regions.items()}
        return {a: a for a in RECORDING_TARGETS if a in self._areas}

    def _check_latency(self, latency_ms):
        def ok(v) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0

        if latency_ms is None:
            return None
        if isinstance(latency_ms, Mapping):
            if unknown := [r for r in latency_ms if r not in self.region_area]:
                raise ValueError(f"latency_ms: region(s) {unknown} are not mapped to an area; mapped regions: "
                                 f"{list(self.region_area) or 'none'}")
            if bad := {r: v for r, v in latency_ms.items() if not ok(v)}:
                raise ValueError(f"latency_ms must be finite numbers >= 0, got {bad}")
            return {str(r): float(v) for r, v in latency_ms.items()}
        if not ok(latency_ms):
            raise ValueError(f"latency_ms must be a finite number >= 0 or a dict region -> ms, got {latency_ms!r}")
        return float(latency_ms)

    def _geometry(self, shape: list[int], image_size: int | None) -> tuple[int, int, int]:
        """(channels, height, width) of the images to load for an input of ``shape``."""
        if image_size is not None and not (isinstance(image_size, int) and image_size >= 1):
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        name = self._input_name
        if len(shape) == 3:
            c, h, w = shape
            if c not in (1, 3):
                raise ValueError(f"input '{name}' has {c} channels; stimulus images can feed 1 (grey) or 3 (RGB)")
            if image_size is not None and (image_size, image_size) != (h, w):
                raise ValueError(f"image_size={image_size}, but the compiled network's input '{name}' takes "
                                 f"{h}x{w} images: compile a spec whose input has that size instead")
            return c, h, w
        if len(shape) == 1:
            d = shape[0]
            if image_size is not None:
                c = d / image_size ** 2
                if c not in (1, 3):
                    raise ValueError(f"image_size={image_size} does not fit input '{name}' of size {d}: it takes "
                                     f"{image_size}x{image_size} grey ({image_size ** 2}) or RGB "
                                     f"({3 * image_size ** 2}) values")
                return int(c), image_size, image_size
            for c in (1, 3):
                side = math.isqrt(d // c)
                if d % c == 0 and side * side * c == d:
                    return c, side, side
            raise ValueError(f"input '{name}' is a vector of {d} values, not a square grey or RGB image: "
                             "give image_size")
        raise ValueError(f"input '{name}' has shape {shape}; stimulus images need [C, H, W] or a vector [D]")

    @staticmethod
    def _check_device(net, device) -> None:
        import torch

        want = torch.device(device)
        have = next((p.device for p in net.parameters()), None)
        if have is not None and (have.type != want.type or (want.index is not None and have.index != want.index)):
            raise ValueError(f"the network is on {have} but device={device!r}: move it first (net.to({device!r}))")

    # ------------------------------------------------------------------ BrainModel
    @property
    def identifier(self) -> str:
        """The model's name in Brain-Score."""
        return self._identifier

    def visual_degrees(self) -> float:
        """The field of view the network's input covers, in degrees."""
        return self._visual_degrees

    def start_task(self, task, fitting_stimuli=None, *args, **kwargs) -> None:
        """Only the passive task (fixation, no output of its own) is supported."""
        if task == self.Task.passive:
            self._task = self.Task.passive
            return
        if task in TASKS:
            raise NotImplementedError(
                f"task '{task}' is not supported: the tnnspec Brain-Score adapter records neural activity "
                "only (start_task('passive') and start_recording); behavioural tasks would need a readout "
                "mapped to the benchmark's labels")
        raise ValueError(f"unknown task {task!r}; Brain-Score's tasks are {', '.join(TASKS)}")

    def start_recording(self, recording_target, time_bins=None) -> None:
        """Record ``recording_target`` (a region name) in ``time_bins``, a list of ``(start_ms,
        end_ms)``, on the following :meth:`look_at` calls."""
        region = str(recording_target)
        if region not in self.region_area:
            mapped = ", ".join(f"{r} -> {a}" for r, a in self.region_area.items()) or "none"
            raise NeuralDataError(f"cannot record region '{region}': no area of the graph is mapped to it "
                                  f"(mapped: {mapped}); pass regions={{'{region}': <area>}}, one of "
                                  f"{self._areas}")
        bins = _time_bins(time_bins)
        from .timemap import TimeMap

        latency = self.latency_for(region)
        tmap = TimeMap(float(self._spec.time.dt_ms), bins.astype(np.float64), latency)
        steps = tmap.steps_needed()
        self._recording = {"region": region, "area": self.region_area[region], "latency_ms": latency,
                           "bins": bins, "timemap": tmap, "steps": steps, "weights": tmap.weights(steps)}

    def latency_for(self, region: str) -> float:
        """The latency (ms) used for ``region``."""
        arg = self._latency_arg
        if isinstance(arg, dict) and region in arg:
            return arg[region]
        if isinstance(arg, float):
            return arg
        reg = self._neural_regions.get(region)
        if reg is None:
            return 0.0
        values = reg.latencies
        if len(values) > 1:
            raise NeuralDataError(f"the spec's neural.regions.{region}.latency_ms lists {len(values)} candidates "
                                  f"{values} (chosen by cross-validation in tnnspec fit); pass one: "
                                  f"latency_ms={{'{region}': ...}}")
        return float(values[0])

    @property
    def recording(self) -> dict | None:
        """What :meth:`look_at` records: region, area, latency_ms, bins, steps (None before
        :meth:`start_recording`)."""
        if self._recording is None:
            return None
        return {k: v for k, v in self._recording.items() if k not in ("timemap", "weights")}

    def describe_recording(self) -> list[str]:
        """One line per bin: which model steps it averages."""
        if self._recording is None:
            raise NeuralDataError("no recording: call start_recording(region, time_bins) first")
        return self._recording["timemap"].describe(self._recording["steps"])

    def look_at(self, stimuli, number_of_trials: int = 1, require_variance: bool = False):
        """The recorded region's responses to ``stimuli`` (a Brain-Score StimulusSet, a pandas
        DataFrame with ``stimulus_id`` and image paths, or a list of image paths): a
        ``NeuroidAssembly`` (a plain ``xarray.DataArray`` without brainio) with dims
        ``presentation × neuroid × time_bin``."""
        from .activations import area_activity
        from .timemap import bin_activity

        if self._recording is None:
            raise NeuralDataError("look_at: no recording started; call start_recording(region, time_bins) first "
                                  f"(regions: {', '.join(self.region_area) or 'none mapped'})")
        if not (isinstance(number_of_trials, (int, np.integer)) and number_of_trials >= 1):
            raise ValueError(f"number_of_trials must be a positive int, got {number_of_trials!r}")
        ids, paths, coords = _stimuli(stimuli)
        unique = list(dict.fromkeys(paths))
        index = {p: i for i, p in enumerate(unique)}
        images = load_images(unique, self._channels, (self._height, self._width))
        rec = self._recording
        area = rec["area"]
        activity = area_activity(self._net, images, [area], steps=rec["steps"], batch_size=self._batch_size,
                                 device=self._device, source="look_at stimuli")[area]
        binned = bin_activity(activity, rec["weights"])                      # [B, U, D]
        values = np.ascontiguousarray(binned.transpose(1, 2, 0)[[index[p] for p in paths]])  # [S, D, B]
        if require_variance and number_of_trials > 1:
            n = int(number_of_trials)
            values = np.repeat(values, n, axis=0)
            coords = {k: np.repeat(v, n) for k, v in coords.items()}
            coords["repetition"] = np.tile(np.arange(n), len(ids))
        return self._package(values, coords)

    # ------------------------------------------------------------------ output
    def _neuroid_coords(self, area: str, d: int) -> dict[str, np.ndarray]:
        idx = np.arange(d)
        coords = {"neuroid_id": np.array([f"{area}.{i}" for i in idx], dtype=object),
                  "neuroid_num": idx,
                  "region": np.full(d, self._recording["region"], dtype=object),
                  "layer": np.full(d, area, dtype=object)}
        shape = self._shapes.get(area)
        if shape is not None and len(shape) == 3 and math.prod(shape) == d:
            c, h, w = shape
            coords["channel"] = idx // (h * w)
            coords["channel_y"] = (idx // w) % h   # row
            coords["channel_x"] = idx % w          # column
        elif shape is not None and len(shape) == 1 and shape[0] == d:
            coords["channel"] = idx
        return coords

    def _package(self, values: np.ndarray, presentation: dict[str, np.ndarray]):
        rec = self._recording
        bins = rec["bins"]
        coords = {**{k: ("presentation", v) for k, v in presentation.items()},
                  **{k: ("neuroid", v) for k, v in self._neuroid_coords(rec["area"], values.shape[1]).items()},
                  "time_bin_start": ("time_bin", bins[:, 0]),
                  "time_bin_end": ("time_bin", bins[:, 1])}
        dims = ["presentation", "neuroid", "time_bin"]
        attrs = {"model": self.identifier, "area": rec["area"], "region": rec["region"],
                 "latency_ms": rec["latency_ms"], "dt_ms": float(self._spec.time.dt_ms), "steps": rec["steps"]}
        cls = _neuroid_assembly_class()
        if cls is None:
            import xarray as xr

            out = xr.DataArray(values, coords=coords, dims=dims)
        else:
            out = cls(values, coords=coords, dims=dims)
        out.attrs.update(attrs)
        return out


# ---------------------------------------------------------------------- helpers
def _time_bins(time_bins) -> np.ndarray:
    """``[(start, end), ...]`` (or one ``(start, end)``) as a [B, 2] array (ints stay ints)."""
    if time_bins is None:
        raise ValueError("start_recording needs time_bins, a list of (start_ms, end_ms), e.g. [(70, 170)]")
    try:
        items = list(time_bins.tolist() if isinstance(time_bins, np.ndarray) else time_bins)
    except TypeError:
        raise ValueError(f"time_bins must be a list of (start_ms, end_ms) pairs, got {time_bins!r}") from None
    if len(items) == 2 and all(np.isscalar(v) for v in items):
        items = [items]  # one bin given as a pair
    try:
        rows = [tuple(np.asarray(b).tolist() if isinstance(b, np.ndarray) else b) for b in items]
        arr = np.array(rows)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] == 0 or arr.dtype.kind not in "iuf":
        raise ValueError(f"time_bins must be a non-empty list of (start_ms, end_ms) number pairs, got {time_bins!r}")
    if not np.isfinite(arr).all():
        raise ValueError(f"time_bins must be finite, got {arr.tolist()}")
    if bad := [tuple(b) for b in arr.tolist() if not b[1] > b[0]]:
        raise ValueError(f"every time bin must end after it starts; got {bad}")
    return arr


def _stimuli(stimuli) -> tuple[list[str], list[str], dict[str, np.ndarray]]:
    """(stimulus_ids, image paths, presentation coordinates) of a StimulusSet, a DataFrame or a
    list of paths."""
    import pandas as pd

    if isinstance(stimuli, pd.DataFrame):
        if "stimulus_id" not in stimuli.columns:
            raise NeuralDataError(f"the stimuli have no 'stimulus_id' column (columns: {list(stimuli.columns)})")
        if len(stimuli) == 0:
            raise NeuralDataError("no stimuli: the stimulus set is empty")
        ids = [str(s) for s in stimuli["stimulus_id"]]
        getter = getattr(stimuli, "get_stimulus", None)
        if callable(getter):
            paths = [os.fspath(getter(s)) for s in stimuli["stimulus_id"]]
        elif col := next((c for c in PATH_COLUMNS if c in stimuli.columns), None):
            paths = [os.fspath(p) for p in stimuli[col]]
        else:
            raise NeuralDataError("the stimuli give no image paths: a StimulusSet's get_stimulus, or a column "
                                  f"{' / '.join(PATH_COLUMNS)} (columns: {list(stimuli.columns)})")
        coords: dict[str, np.ndarray] = {}
        for col in stimuli.columns:
            values = stimuli[col].to_numpy()
            if col == "repetition" or not all(pd.api.types.is_scalar(v) for v in values):
                continue  # not a coordinate a MultiIndex can hold
            coords[str(col)] = values
        coords["stimulus_id"] = stimuli["stimulus_id"].to_numpy()  # as given: benchmarks align on these values
        coords.setdefault("stimulus_path", np.array(paths, dtype=object))
        return ids, paths, coords
    if isinstance(stimuli, (str, bytes, os.PathLike)):
        raise NeuralDataError("look_at takes a StimulusSet, a DataFrame or a list of image paths, not one path; "
                              f"wrap it in a list: [{stimuli!r}]")
    try:
        paths = [os.fspath(p) for p in stimuli]
    except TypeError:
        raise NeuralDataError(f"look_at takes a StimulusSet, a DataFrame or a list of image paths, not "
                              f"{type(stimuli).__name__}") from None
    if not paths:
        raise NeuralDataError("no stimuli: the list of image paths is empty")
    arr = np.array(paths, dtype=object)
    return paths, paths, {"stimulus_id": arr, "stimulus_path": arr.copy()}


def load_images(paths, channels: int, size: tuple[int, int]):
    """Images at ``paths`` as a float32 tensor [N, channels, H, W] in [0, 1]: converted to ``L``
    (1 channel) or ``RGB`` (3), resized with PIL bilinear to ``size`` = (H, W) when they differ."""
    import torch
    from PIL import Image

    target = "L" if channels == 1 else "RGB"
    h, w = size
    out = np.empty((len(paths), channels, h, w), dtype=np.uint8)  # NCHW strides (a channels-last view of a
    # 1-channel batch counts as contiguous but makes conv pick other kernels: other float rounding)
    for i, p in enumerate(paths):
        if not os.path.isfile(p):
            raise NeuralDataError(f"{p}: no such image file")
        try:
            with Image.open(p) as img:
                if img.mode in _UNSUPPORTED_MODES:
                    raise NeuralDataError(f"{p}: unsupported image mode {img.mode!r} (16-bit or float); "
                                          "stimuli must be 8-bit grey, palette or RGB(A) images")
                img = img.convert(target)
                if img.size != (w, h):
                    img = img.resize((w, h), Image.Resampling.BILINEAR)
                arr = np.asarray(img, dtype=np.uint8)
        except NeuralDataError:
            raise
        except Exception as e:  # PIL: unreadable or truncated file
            raise NeuralDataError(f"{p}: cannot read image ({type(e).__name__}: {e})") from e
        out[i] = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.from_numpy(out).to(torch.float32).div_(255.0)


_ASSEMBLY_MODULES = ("brainscore_core.supported_data_standards.brainio.assemblies", "brainio.assemblies")


def _neuroid_assembly_class():
    """brainio's ``NeuroidAssembly`` (from brainscore_core or brainio) if one imports, else None."""
    for name in _ASSEMBLY_MODULES:
        try:
            return importlib.import_module(name).NeuroidAssembly
        except (ImportError, AttributeError):
            continue
    return None


@functools.cache
def _brainscore_class(base: type) -> type:
    return type("TnnspecBrainScoreModel", (TnnspecBrainModel, base), {
        "__module__": __name__,
        "__doc__": "TnnspecBrainModel that is also a brainscore_vision BrainModel (see brain_model).",
        "Task": base.Task,
        "RecordingTarget": base.RecordingTarget,
    })


def brain_model(net, **kw) -> TnnspecBrainModel:
    """A :class:`TnnspecBrainModel` of ``net`` (keywords as there); an instance of
    ``brainscore_vision.model_interface.BrainModel`` as well when brainscore_vision is installed."""
    try:
        from brainscore_vision.model_interface import BrainModel
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] == "brainscore_vision":
            return TnnspecBrainModel(net, **kw)
        raise
    return _brainscore_class(BrainModel)(net, **kw)


__all__ = ["TnnspecBrainModel", "brain_model", "load_images", "RECORDING_TARGETS"]
