"""Spike times in an NWB file binned into recordings (see :mod:`tnnspec.neural.recordings`).

Needs the optional extra ``[nwb]`` (pynwb), imported only when a file is read::

    >>> from tnnspec.neural.nwb import read_nwb
    >>> da = read_nwb("session.nwb", bin_ms=10, start_ms=0, stop_ms=250)  # doctest: +SKIP

* neuroids: the rows of ``nwbfile.units``; ``neuroid_id`` is the units' ``neuroid_id`` column if
  there is one, else their ``id``. ``region``: the column ``region_column`` if given, else the
  units' ``location`` column, else the ``location`` of each unit's electrodes.
* presentations: the rows of a TimeIntervals table with a stimulus column, in onset
  (``start_time``) order; ``repetition`` counts the earlier presentations of the same stimulus.
* values: spike counts in [onset + bin start, onset + bin end) for bins of ``bin_ms`` from
  ``start_ms`` to ``stop_ms``. A spike within 1 ns of a bin edge counts as on the edge, so that
  float rounding of ``onset + offset`` cannot move a spike written exactly on an edge.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .errors import NeuralDataError
from .recordings import _build

EDGE_TOLERANCE_S = 1e-9


def _strings(values: Any) -> np.ndarray:
    """A column's values as a numpy str array (bytes decoded)."""
    return np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.asarray(values).ravel()],
                    dtype=str)


def _bin_edges(path: Path, bin_ms: float, start_ms: float, stop_ms: float) -> np.ndarray:
    if not all(np.isfinite([bin_ms, start_ms, stop_ms])) or bin_ms <= 0 or stop_ms <= start_ms:
        raise NeuralDataError(f"{path}: bad bins: need finite bin_ms > 0 and start_ms < stop_ms, got "
                              f"bin_ms={bin_ms}, start_ms={start_ms}, stop_ms={stop_ms}")
    n = round((stop_ms - start_ms) / bin_ms)
    if abs(start_ms + n * bin_ms - stop_ms) > 1e-9:
        raise NeuralDataError(f"{path}: bad bins: bins of {bin_ms} ms from {start_ms} ms do not end exactly at "
                              f"stop_ms={stop_ms} (the range {stop_ms - start_ms} ms is not a multiple of bin_ms)")
    edges = start_ms + bin_ms * np.arange(n + 1, dtype=np.float64)
    edges[-1] = stop_ms
    return edges


def _units_regions(path: Path, units: Any, region_column: str | None) -> np.ndarray:
    """One region per unit: ``region_column``, else the units' ``location``, else their electrodes'."""
    cols = list(units.colnames)
    if region_column is not None:
        if region_column not in cols:
            raise NeuralDataError(f"{path}: the units table has no column {region_column!r} "
                                  f"(columns: {', '.join(cols)})")
        return _strings(units[region_column].data[:])
    if "location" in cols:
        return _strings(units["location"].data[:])
    if "electrodes" not in cols:
        raise NeuralDataError(f"{path}: no region for units: the units table has no 'location' or 'electrodes' "
                              "column; pass region_column=")
    col = units["electrodes"]
    if hasattr(col, "target"):  # ragged: a VectorIndex over a DynamicTableRegion
        ends = np.asarray(col.data[:], dtype=np.int64)
        rows, table = np.asarray(col.target.data[:], dtype=np.int64), col.target.table
    else:  # one electrode per unit
        rows, table = np.asarray(col.data[:], dtype=np.int64), col.table
        ends = np.arange(1, len(rows) + 1)
    if "location" not in table.colnames:
        raise NeuralDataError(f"{path}: no region for units: the electrodes table has no 'location' column")
    locations = _strings(table["location"].data[:])
    out, unknown, mixed = [], [], []
    ids = units.id[:]
    for u, (a, b) in enumerate(zip(np.concatenate([[0], ends[:-1]]), ends)):
        locs = list(dict.fromkeys(locations[rows[a:b]]))
        if len(locs) > 1:
            mixed.append(f"{ids[u]} ({'/'.join(locs)})")
        if not locs or locs[0] == "":
            unknown.append(str(ids[u]))
        out.append(locs[0] if locs else "")
    if unknown:
        raise NeuralDataError(f"{path}: no region for units {', '.join(unknown[:10])}"
                              f"{', ...' if len(unknown) > 10 else ''}: no electrode location; pass region_column=")
    if mixed:
        raise NeuralDataError(f"{path}: units with electrodes in several locations: {', '.join(mixed[:10])}; "
                              "pass region_column=")
    return np.array(out, dtype=str)


def _presentation_table(path: Path, nwbfile: Any, name: str | None, column: str) -> Any:
    tables = dict(nwbfile.intervals or {})
    for special in ("trials", "epochs"):
        if getattr(nwbfile, special, None) is not None:
            tables.setdefault(special, getattr(nwbfile, special))
    available = ", ".join(tables) or "none"
    if name is not None:
        if name not in tables:
            raise NeuralDataError(f"{path}: no interval table {name!r} (tables: {available})")
        if column not in tables[name].colnames:
            raise NeuralDataError(f"{path}: interval table {name!r} has no stimulus column {column!r} "
                                  f"(columns: {', '.join(tables[name].colnames)})")
        return tables[name]
    found = [n for n, t in tables.items() if n not in ("trials", "epochs") and column in t.colnames]
    if len(found) > 1:
        raise NeuralDataError(f"{path}: several interval tables have a {column!r} column ({', '.join(found)}); "
                              "choose one with presentations=")
    if not found and "trials" in tables and column in tables["trials"].colnames:
        found = ["trials"]
    if not found:
        raise NeuralDataError(f"{path}: no presentation table: no interval table has a stimulus column "
                              f"{column!r} (tables: {available}); pass presentations= / stimulus_column=")
    return tables[found[0]]


def read_nwb(path: str | os.PathLike, *, bin_ms: float = 10.0, start_ms: float = 0.0, stop_ms: float = 250.0,
             presentations: str | None = None, stimulus_column: str = "stimulus_id",
             region_column: str | None = None) -> xr.DataArray:
    """Bin the spike times of every unit around every stimulus presentation (see module doc).

    ``presentations`` names the TimeIntervals table (in ``nwbfile.intervals``, or ``"trials"`` /
    ``"epochs"``); by default the one interval table with ``stimulus_column``, else the trials table
    if it has it. Returns checked recordings of spike counts (float64); errors name the file.
    """
    path = Path(path)
    edges_ms = _bin_edges(path, bin_ms, start_ms, stop_ms)
    try:
        from pynwb import NWBHDF5IO
    except ImportError as e:
        raise NeuralDataError(f"{path}: reading NWB files needs pynwb: pip install 'tnnspec[nwb]'") from e
    if not path.is_file():
        raise NeuralDataError(f"{path}: file not found")
    try:
        io = NWBHDF5IO(str(path), mode="r")
    except Exception as e:  # h5py / hdmf raise many kinds; the user sees one clear line
        raise NeuralDataError(f"{path}: not an NWB file ({type(e).__name__}: {e})") from e
    with io:
        try:
            nwbfile = io.read()
        except Exception as e:
            raise NeuralDataError(f"{path}: not a readable NWB file ({type(e).__name__}: {e})") from e
        units = nwbfile.units
        if units is None or len(units) == 0:
            raise NeuralDataError(f"{path}: no units (the file has no spike-sorted units table, or it is empty)")
        if "spike_times" not in units.colnames:
            raise NeuralDataError(f"{path}: the units table has no 'spike_times' column")
        ends = np.asarray(units["spike_times"].data[:], dtype=np.int64)
        flat = np.asarray(units["spike_times"].target.data[:], dtype=np.float64)
        neuroid_id = (_strings(units["neuroid_id"].data[:]) if "neuroid_id" in units.colnames
                      else _strings(units.id[:]))
        region = _units_regions(path, units, region_column)

        table = _presentation_table(path, nwbfile, presentations, stimulus_column)
        onsets = np.asarray(table["start_time"].data[:], dtype=np.float64)
        raw = np.asarray(table[stimulus_column].data[:])
    if raw.dtype.kind not in "USOiu" or (raw.dtype.kind == "O" and not all(isinstance(v, (str, bytes)) for v in raw)):
        raise NeuralDataError(f"{path}: stimulus column {stimulus_column!r} must hold strings or integers, "
                              f"not {raw.dtype}")
    if len(onsets) == 0:
        raise NeuralDataError(f"{path}: the presentation table has no rows")
    if not np.isfinite(onsets).all():
        raise NeuralDataError(f"{path}: the presentation table has NaN or inf start_time values")

    order = np.argsort(onsets, kind="stable")
    onsets, stim = onsets[order], _strings(raw)[order]
    seen: dict[str, int] = {}
    repetition = np.empty(len(stim), dtype=np.int64)
    for i, s in enumerate(stim):
        repetition[i] = seen[s] = seen.get(s, -1) + 1

    # counts[p, u, b] = #spikes of u in [onset_p + edge_b, onset_p + edge_b+1): searchsorted counts the
    # spikes before each edge; consecutive differences give the counts per bin.
    times = onsets[:, None] + edges_ms[None, :] / 1000.0 - EDGE_TOLERANCE_S  # [P, B+1] seconds
    counts = np.empty((len(onsets), len(ends), len(edges_ms) - 1))
    for u, (a, b) in enumerate(zip(np.concatenate([[0], ends[:-1]]), ends)):
        before = np.searchsorted(np.sort(flat[a:b]), times, side="left")
        counts[:, u, :] = np.diff(before, axis=1)
    attrs = dict(source=str(path), bin_ms=float(bin_ms), start_ms=float(start_ms), stop_ms=float(stop_ms),
                 presentations=table.name, stimulus_column=stimulus_column)
    coords = dict(stimulus_id=stim, repetition=repetition, neuroid_id=neuroid_id, region=region,
                  time_bin_start=edges_ms[:-1], time_bin_end=edges_ms[1:])
    return _build(counts, coords, attrs, str(path))  # checks, e.g. duplicate neuroid_id, under the file's name
