"""Neural recordings as an :class:`xarray.DataArray` in Brain-Score's layout.

One array of responses (spike counts or rates, float64, no NaN/inf) with three dims, always in this
order, and six required 1-D coordinates::

    dims        coordinates (all required)            meaning
    presentation   stimulus_id (str), repetition (int)   one showing of one image
    neuroid        neuroid_id (str), region (str)        one recorded unit / site
    time_bin       time_bin_start, time_bin_end (float)  [start, end) in ms from stimulus onset

Other coordinates and ``attrs`` are kept as they are. A tiny example::

    >>> import numpy as np
    >>> from tnnspec.neural.recordings import make_recordings
    >>> da = make_recordings(np.zeros((3, 2, 2)),
    ...                      stimulus_id=["a", "b", "a"], repetition=[0, 0, 1],
    ...                      neuroid_id=["n0", "n1"], region=["V4", "IT"],
    ...                      time_bin_start=[70, 90], time_bin_end=[90, 110])
    >>> da.dims
    ('presentation', 'neuroid', 'time_bin')

Files: ``.nc`` (netCDF-4 via h5netcdf; strings stored as variable-length UTF-8 strings, attrs and
extra coordinates kept) and ``.npz`` (the plain form: arrays ``data``, ``stimulus_id``,
``repetition``, ``neuroid_id``, ``region``, ``time_bin_start``, ``time_bin_end`` only — attrs and
extra coordinates are not stored). ``.nwb`` spike files are read (binned) by
:func:`tnnspec.neural.nwb.read_nwb`.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .errors import NeuralDataError

DIMS = ("presentation", "neuroid", "time_bin")
COORDS = {  # name -> (dim, kind): kind "str", "int" or "float"
    "stimulus_id": ("presentation", "str"),
    "repetition": ("presentation", "int"),
    "neuroid_id": ("neuroid", "str"),
    "region": ("neuroid", "str"),
    "time_bin_start": ("time_bin", "float"),
    "time_bin_end": ("time_bin", "float"),
}
NPZ_KEYS = ("data", *COORDS)
_FIRST = 5  # how many examples a message lists


def _few(items: Sequence[Any], n: int = _FIRST) -> str:
    shown = ", ".join(str(x) for x in items[:n])
    return shown + (", ..." if len(items) > n else "")


def _raise(source: str, problems: list[str]) -> None:
    if problems:
        head = f"{source}: {len(problems)} problem(s) with the recordings:"
        raise NeuralDataError("\n".join([head, *(f"  - {p}" for p in problems)]))


def _convert(name: str, values: np.ndarray, kind: str, problems: list[str]) -> np.ndarray | None:
    """``values`` as a str / int64 / float64 array, or None (and a problem) if it does not fit."""
    v = np.asarray(values)
    if kind == "str" and v.dtype.kind == "S":  # fixed-width bytes, as some netCDF writers leave them
        try:
            v = np.char.decode(v, "utf-8")
        except UnicodeDecodeError:
            problems.append(f"coordinate '{name}' holds bytes that are not UTF-8")
            return None
    if kind == "str":
        if v.dtype.kind == "U" or (v.dtype.kind == "O" and all(isinstance(x, str) for x in v.ravel())):
            out = v.astype(str)
            if (out == "").any():
                problems.append(f"coordinate '{name}' has {int((out == '').sum())} empty string(s)")
            return out
        problems.append(f"coordinate '{name}' must hold strings, not {v.dtype} (use .astype(str))")
    elif kind == "int":
        if v.dtype.kind in "iu":
            return v.astype(np.int64)
        problems.append(f"coordinate '{name}' must hold integers, not {v.dtype}")
    else:
        if v.dtype.kind in "iuf":
            out = v.astype(np.float64)
            if not np.isfinite(out).all():
                problems.append(f"coordinate '{name}' has NaN or inf values")
                return None
            return out
        problems.append(f"coordinate '{name}' must hold numbers (ms), not {v.dtype}")
    return None


def check_recordings(da: xr.DataArray, source: str = "<recordings>") -> xr.DataArray:
    """Validate ``da`` against the layout above and return a normalized copy.

    The copy has float64 values and the required coordinates as str / int64 / float64 arrays (a
    pandas MultiIndex on a dim, as Brain-Score builds, is reset into plain coordinates). Every
    problem found is reported at once in one :class:`NeuralDataError` whose message starts with
    ``f"{source}: "``, then one problem per line.
    """
    if not isinstance(da, xr.DataArray):
        raise NeuralDataError(f"{source}: expected an xarray.DataArray, got {type(da).__name__}")
    problems: list[str] = []
    if tuple(da.dims) != DIMS:
        hint = f" (use da.transpose{DIMS})" if sorted(da.dims) == sorted(DIMS) else ""
        problems.append(f"dims are {tuple(da.dims)}, expected {DIMS}{hint}")
    for dim in set(DIMS) & set(da.dims):
        if isinstance(da.indexes.get(dim), pd.MultiIndex):
            da = da.reset_index(dim)
        if da.sizes[dim] == 0:
            problems.append(f"dim '{dim}' is empty")

    coords: dict[str, np.ndarray] = {}
    for name, (dim, kind) in COORDS.items():
        if name not in da.coords:
            problems.append(f"coordinate '{name}' (on '{dim}') is missing")
        elif da.coords[name].dims != (dim,):
            problems.append(f"coordinate '{name}' must lie along ('{dim}',), not {da.coords[name].dims}")
        elif (conv := _convert(name, da.coords[name].values, kind, problems)) is not None:
            coords[name] = conv

    if "neuroid_id" in coords:
        ids = pd.Series(coords["neuroid_id"])
        if (dup := ids[ids.duplicated()].unique()).size:
            problems.append(f"{dup.size} duplicate neuroid_id(s): {_few(list(dup))}")
    if "stimulus_id" in coords and "repetition" in coords:
        pairs = pd.DataFrame({"s": coords["stimulus_id"], "r": coords["repetition"]})
        dup = pairs[pairs.duplicated()].drop_duplicates()
        if len(dup):
            shown = [f"({s!r}, {r})" for s, r in zip(dup.s, dup.r)]
            problems.append(f"{len(dup)} duplicate (stimulus_id, repetition) pair(s): {_few(shown)}")
    if "time_bin_start" in coords and "time_bin_end" in coords:
        start, end = coords["time_bin_start"], coords["time_bin_end"]
        if (bad := np.flatnonzero(end <= start)).size:
            problems.append(f"{bad.size} time bin(s) with end <= start: "
                            + _few([f"#{i} [{start[i]:g}, {end[i]:g})" for i in bad]))
        if (bad := np.flatnonzero(np.diff(start) <= 0)).size:
            problems.append("time bins are not strictly increasing (time_bin_start[i] < time_bin_start[i+1]): "
                            + _few([f"#{i} starts {start[i]:g}, #{i + 1} starts {start[i + 1]:g}" for i in bad]))
        elif (bad := np.flatnonzero(end[:-1] > start[1:])).size:
            problems.append(f"{bad.size} overlapping time bin(s): "
                            + _few([f"#{i} [{start[i]:g}, {end[i]:g}) and #{i + 1} [{start[i + 1]:g}, "
                                    f"{end[i + 1]:g})" for i in bad]))

    values = da.values
    if values.dtype.kind not in "biuf":
        problems.append(f"values must be numbers, not {values.dtype}")
    else:
        values = values.astype(np.float64)
        if (n_bad := int((~np.isfinite(values)).sum())) and tuple(da.dims) == DIMS:
            p, n, b = np.argwhere(~np.isfinite(values))[0]
            where = [f"presentation {p}", f"neuroid {n}", f"time bin {b}"]
            if "stimulus_id" in coords and "repetition" in coords:
                where[0] += f" ({str(coords['stimulus_id'][p])!r}, repetition {coords['repetition'][p]})"
            if "neuroid_id" in coords:
                where[1] += f" ({str(coords['neuroid_id'][n])!r})"
            if "time_bin_start" in coords and "time_bin_end" in coords:
                where[2] += f" ([{coords['time_bin_start'][b]:g}, {coords['time_bin_end'][b]:g}) ms)"
            problems.append(f"{n_bad} NaN or inf value(s); the first at {', '.join(where)}")
        elif n_bad:
            problems.append(f"{n_bad} NaN or inf value(s)")
    _raise(source, problems)
    return da.copy(data=values).assign_coords({k: (COORDS[k][0], v) for k, v in coords.items()})


def _build(data: Any, coords: dict[str, Any], attrs: dict | None, source: str) -> xr.DataArray:
    """Shape-check the arrays, build the DataArray and check it."""
    arr = np.asarray(data)
    if arr.ndim != 3:
        raise NeuralDataError(f"{source}: data must be 3-D [presentation, neuroid, time_bin], got shape {arr.shape}")
    problems = []
    cs = {}
    for name, (dim, _) in COORDS.items():
        cs[name] = np.asarray(coords[name])
        size = arr.shape[DIMS.index(dim)]
        if cs[name].shape != (size,):
            problems.append(f"coordinate '{name}' has shape {cs[name].shape}, expected ({size},) to match "
                            f"data shape {arr.shape} along '{dim}'")
    _raise(source, problems)
    da = xr.DataArray(arr, dims=DIMS, coords={k: (COORDS[k][0], v) for k, v in cs.items()}, attrs=dict(attrs or {}))
    return check_recordings(da, source)


def make_recordings(data: Any, *, stimulus_id: Sequence[str], repetition: Sequence[int],
                    neuroid_id: Sequence[str], region: Sequence[str], time_bin_start: Sequence[float],
                    time_bin_end: Sequence[float], attrs: dict | None = None) -> xr.DataArray:
    """Build checked recordings from ``data`` [P, N, B] and the six coordinates (see module doc)."""
    coords = dict(stimulus_id=stimulus_id, repetition=repetition, neuroid_id=neuroid_id, region=region,
                  time_bin_start=time_bin_start, time_bin_end=time_bin_end)
    return _build(data, coords, attrs, "<recordings>")


def load_recordings(path: str | os.PathLike, **nwb_options: Any) -> xr.DataArray:
    """Load and check recordings from ``.nc``, ``.npz`` or ``.nwb`` (``nwb_options`` go to
    :func:`tnnspec.neural.nwb.read_nwb`). Any problem is a :class:`NeuralDataError` naming the file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".nc", ".npz", ".nwb"):
        raise NeuralDataError(f"{path}: unknown recordings format {path.suffix!r} (expected .nc, .npz or .nwb)")
    if not path.is_file():
        raise NeuralDataError(f"{path}: " + ("is a folder, not a file" if path.is_dir() else "file not found"))
    if nwb_options and suffix != ".nwb":
        raise NeuralDataError(f"{path}: options {sorted(nwb_options)} apply only to .nwb files")
    if suffix == ".nwb":
        from .nwb import read_nwb

        return check_recordings(read_nwb(path, **nwb_options), str(path))
    if suffix == ".nc":
        try:
            da = xr.load_dataarray(path, engine="h5netcdf")
        except Exception as e:  # h5py / xarray raise many kinds; the user sees one clear line
            raise NeuralDataError(f"{path}: cannot read as a netCDF-4 DataArray ({type(e).__name__}: {e})") from e
        return check_recordings(da, str(path))
    if not zipfile.is_zipfile(path):
        raise NeuralDataError(f"{path}: cannot read as .npz (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            if missing := [k for k in NPZ_KEYS if k not in z.files]:
                raise NeuralDataError(f"{path}: .npz lacks array(s) {', '.join(missing)} "
                                      f"(it has: {', '.join(z.files) or 'none'})")
            arrays = {k: z[k] for k in NPZ_KEYS}
    except NeuralDataError:
        raise
    except ValueError as e:
        if "Object arrays" in str(e):
            raise NeuralDataError(f"{path}: .npz holds object (pickled) arrays, which are not loaded for safety; "
                                  "store strings as fixed-width unicode arrays (np.array(ids, dtype=str))") from e
        raise NeuralDataError(f"{path}: cannot read as .npz ({e})") from e
    except Exception as e:
        raise NeuralDataError(f"{path}: cannot read as .npz ({type(e).__name__}: {e})") from e
    return _build(arrays.pop("data"), arrays, None, str(path))


def save_recordings(da: xr.DataArray, path: str | os.PathLike) -> None:
    """Check ``da`` and write it to ``.nc`` (netCDF-4, h5netcdf) or ``.npz`` atomically: the data go
    to a temporary file in the same folder that replaces ``path`` only once complete."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".nc", ".npz"):
        raise NeuralDataError(f"{path}: cannot save recordings as {path.suffix!r} (use .nc or .npz)")
    da = check_recordings(da, str(path))
    if not path.parent.is_dir():
        raise NeuralDataError(f"{path}: folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if suffix == ".nc":
            # numpy str coords are written as variable-length UTF-8 strings; they load as object
            # arrays of str, which check_recordings turns back into numpy str arrays.
            da.to_netcdf(tmp, engine="h5netcdf")
        else:
            with open(tmp, "wb") as f:
                np.savez(f, data=da.values, **{k: da.coords[k].values for k in COORDS})
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; use the usual permissions
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, (OSError, ValueError, TypeError)):
            raise NeuralDataError(f"{path}: cannot write recordings ({type(e).__name__}: {e})") from e
        raise


# --- helpers for checked recordings ------------------------------------------------------------


def regions(da: xr.DataArray) -> list[str]:
    """The regions of the neuroids, in order of first appearance."""
    return [str(r) for r in pd.unique(np.asarray(da.coords["region"].values))]


def select_region(da: xr.DataArray, region: str) -> xr.DataArray:
    """The neuroids of one region (an error names the available regions if it has none)."""
    mask = np.asarray(da.coords["region"].values) == region
    if not mask.any():
        raise NeuralDataError(f"no neuroids in region {region!r}; the recordings have: {', '.join(regions(da))}")
    return da.isel(neuroid=np.flatnonzero(mask))


def stimulus_ids(da: xr.DataArray) -> list[str]:
    """The distinct stimulus ids, in order of first appearance."""
    return [str(s) for s in pd.unique(np.asarray(da.coords["stimulus_id"].values))]


def trial_average(da: xr.DataArray, ids: Sequence[str] | None = None) -> np.ndarray:
    """Mean over the repetitions of each stimulus, [S, N, B], rows in the order of ``ids``
    (default :func:`stimulus_ids`). An id without presentations is an error."""
    codes, uniques = pd.factorize(np.asarray(da.coords["stimulus_id"].values))
    counts = np.bincount(codes)
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    means = np.add.reduceat(np.asarray(da.values, dtype=np.float64)[order], starts, axis=0) / counts[:, None, None]
    if ids is None:
        return means
    index = {str(s): i for i, s in enumerate(uniques)}
    if missing := [s for s in ids if s not in index]:
        raise NeuralDataError(f"{len(missing)} stimulus_id(s) have no presentations in the recordings: {_few(missing)}")
    return means[[index[s] for s in ids]]


def bins(da: xr.DataArray) -> np.ndarray:
    """The time bins as a [B, 2] float array of (start, end) in ms from stimulus onset."""
    return np.stack([np.asarray(da.coords["time_bin_start"].values, dtype=np.float64),
                     np.asarray(da.coords["time_bin_end"].values, dtype=np.float64)], axis=1)
