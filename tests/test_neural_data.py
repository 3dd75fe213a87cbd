"""The data layer of tnnspec.neural: recordings (check, save, load), NWB spike binning, stimuli."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest
import torch
import xarray as xr
from PIL import Image

from tnnspec.neural import NeuralDataError
from tnnspec.neural import recordings as rec
from tnnspec.neural.recordings import (bins, check_recordings, load_recordings, make_recordings, regions,
                                       save_recordings, select_region, stimulus_ids, trial_average)
from tnnspec.neural.stimuli import Stimuli, load_stimuli


def _rec(**over):
    rng = np.random.default_rng(0)
    kw = dict(stimulus_id=["a", "b", "a", "c"], repetition=[0, 0, 1, 0], neuroid_id=["n0", "n1", "n2"],
              region=["V4", "IT", "V4"], time_bin_start=[70.0, 90.0], time_bin_end=[90.0, 110.0])
    kw.update(over)
    return make_recordings(rng.normal(size=(4, 3, 2)), **kw)


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


# --- recordings ------------------------------------------------------------------------------


def test_make_recordings_layout_and_helpers():
    da = _rec(attrs={"subject": "m1"})
    assert da.dims == ("presentation", "neuroid", "time_bin") and da.dtype == np.float64
    assert da.attrs == {"subject": "m1"}
    assert regions(da) == ["V4", "IT"] and stimulus_ids(da) == ["a", "b", "c"]
    assert list(select_region(da, "V4").neuroid_id.values) == ["n0", "n2"]
    with pytest.raises(NeuralDataError, match="region 'MT'.*V4, IT"):
        select_region(da, "MT")
    np.testing.assert_array_equal(bins(da), [[70, 90], [90, 110]])
    v = da.values
    avg = trial_average(da, ["c", "a"])
    np.testing.assert_allclose(avg, np.stack([v[3], (v[0] + v[2]) / 2]))
    np.testing.assert_allclose(trial_average(da), np.stack([(v[0] + v[2]) / 2, v[1], v[3]]))
    with pytest.raises(NeuralDataError, match="1 stimulus_id.*zz"):
        trial_average(da, ["a", "zz"])


def test_make_recordings_rejects_mismatched_shapes():
    with pytest.raises(NeuralDataError, match=r"(?s)<recordings>: .*'region' has shape \(2,\), expected \(3,\)"):
        _rec(region=["V4", "IT"])


@pytest.mark.parametrize("suffix", [".nc", ".npz"])
def test_save_load_round_trip(tmp_path, suffix):
    da = _rec(attrs={"subject": "m1"} if suffix == ".nc" else None)
    path = tmp_path / f"data{suffix}"
    save_recordings(da, path)
    back = load_recordings(path)
    assert back.identical(da)  # values, every coordinate (names, dims, values, dtypes) and attrs
    for name in rec.COORDS:
        assert back[name].dtype == da[name].dtype
        assert list(back[name].values) == list(da[name].values)
    assert _files(tmp_path) == [path.name]  # no temp file left


def test_netcdf_strings_are_variable_length_and_load_as_str(tmp_path):
    path = tmp_path / "data.nc"
    save_recordings(_rec(), path)
    raw = xr.load_dataarray(path, engine="h5netcdf")
    assert list(raw.stimulus_id.values) == ["a", "b", "a", "c"]  # as written, before any check
    assert load_recordings(path).stimulus_id.dtype.kind == "U"


def test_save_is_atomic_npz(tmp_path, monkeypatch):
    def half_write(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", half_write)
    path = tmp_path / "data.npz"
    with pytest.raises(NeuralDataError, match=r"data\.npz: cannot write recordings \(OSError: disk full\)"):
        save_recordings(_rec(), path)
    assert _files(tmp_path) == []


def test_save_is_atomic_netcdf_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "data.nc"
    old = _rec()
    save_recordings(old, path)

    def half_write(self, target, **kw):
        with open(target, "wb") as f:
            f.write(b"\x89HDF partial")
        raise RuntimeError("interrupted")

    monkeypatch.setattr(xr.DataArray, "to_netcdf", half_write)
    with pytest.raises(RuntimeError, match="interrupted"):  # not a user error: passed on as it is
        save_recordings(_rec(neuroid_id=["x", "y", "z"]), path)
    monkeypatch.undo()
    assert _files(tmp_path) == ["data.nc"]
    assert load_recordings(path).identical(old)


def test_save_rejects_bad_suffix_and_bad_recordings(tmp_path):
    with pytest.raises(NeuralDataError, match=r"data\.csv: cannot save recordings as '\.csv'"):
        save_recordings(_rec(), tmp_path / "data.csv")
    bad = _rec().copy()
    bad.values[0, 0, 0] = np.nan
    with pytest.raises(NeuralDataError, match=r"data\.nc: 1 problem"):
        save_recordings(bad, tmp_path / "data.nc")
    assert _files(tmp_path) == []


def test_check_lists_every_problem_with_the_source():
    da = _rec()
    values = da.values.copy()
    values[1, 2, 0] = np.nan
    values[3, 0, 1] = np.inf
    bad = da.copy(data=values).assign_coords(
        neuroid_id=("neuroid", ["n0", "n1", "n0"]),
        repetition=("presentation", [0, 0, 0, 0]),
        time_bin_start=("time_bin", [70.0, 80.0]),  # overlaps [70, 90)
    ).drop_vars("region")
    with pytest.raises(NeuralDataError) as err:
        check_recordings(bad, source="session.nc")
    msg = str(err.value)
    lines = msg.splitlines()
    assert lines[0] == "session.nc: 5 problem(s) with the recordings:"
    assert len(lines) == 6
    for part in ["coordinate 'region' (on 'neuroid') is missing",
                 "1 duplicate neuroid_id(s): n0",
                 "1 duplicate (stimulus_id, repetition) pair(s): ('a', 0)",
                 "1 overlapping time bin(s): #0 [70, 90) and #1 [80, 110)",
                 "2 NaN or inf value(s); the first at presentation 1 ('b', repetition 0), neuroid 2 ('n0'), "
                 "time bin 0 ([70, 90) ms)"]:
        assert part in msg


def test_check_bins_not_increasing_and_end_before_start():
    da = _rec().assign_coords(time_bin_start=("time_bin", [90.0, 70.0]), time_bin_end=("time_bin", [80.0, 90.0]))
    with pytest.raises(NeuralDataError) as err:
        check_recordings(da)
    msg = str(err.value)
    assert msg.startswith("<recordings>: 2 problem(s)")
    assert "1 time bin(s) with end <= start: #0 [90, 80)" in msg
    assert "not strictly increasing" in msg and "#0 starts 90, #1 starts 70" in msg


def test_check_dims_empty_and_coord_types():
    da = _rec()
    with pytest.raises(NeuralDataError, match=r"dims are \('time_bin', 'neuroid', 'presentation'\).*transpose"):
        check_recordings(da.transpose())
    with pytest.raises(NeuralDataError, match="dim 'time_bin' is empty"):
        check_recordings(da.isel(time_bin=slice(0, 0)))
    with pytest.raises(NeuralDataError, match="'stimulus_id' must hold strings, not int64"):
        check_recordings(da.assign_coords(stimulus_id=("presentation", [1, 2, 3, 4])))
    with pytest.raises(NeuralDataError, match="'repetition' must hold integers"):
        check_recordings(da.assign_coords(repetition=("presentation", [0.0, 0.0, 1.0, 0.0])))


def test_check_accepts_a_multiindex_and_object_strings():
    da = _rec()
    stacked = da.set_index(presentation=["stimulus_id", "repetition"])
    assert check_recordings(stacked).identical(da)
    obj = da.assign_coords(region=("neuroid", np.array(["V4", "IT", "V4"], dtype=object)))
    assert check_recordings(obj).region.dtype.kind == "U"


def test_load_errors(tmp_path):
    with pytest.raises(NeuralDataError, match=r"missing\.nc: file not found"):
        load_recordings(tmp_path / "missing.nc")
    (tmp_path / "data.csv").write_text("x")
    with pytest.raises(NeuralDataError, match=r"data\.csv: unknown recordings format '\.csv'"):
        load_recordings(tmp_path / "data.csv")
    corrupt = tmp_path / "corrupt.nc"
    corrupt.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(NeuralDataError, match=r"corrupt\.nc: cannot read as a netCDF-4 DataArray"):
        load_recordings(corrupt)
    (tmp_path / "corrupt.npz").write_bytes(b"not a zip")
    with pytest.raises(NeuralDataError, match=r"corrupt\.npz: cannot read as \.npz \(not a zip archive\)"):
        load_recordings(tmp_path / "corrupt.npz")
    da = _rec()
    arrays = {k: da[k].values for k in rec.COORDS if k != "region"}
    np.savez(tmp_path / "noregion.npz", data=da.values, **arrays)
    with pytest.raises(NeuralDataError, match=r"noregion\.npz: \.npz lacks array\(s\) region"):
        load_recordings(tmp_path / "noregion.npz")
    np.savez(tmp_path / "pickled.npz", data=da.values, region=np.array(["V4", "IT", "V4"], dtype=object), **arrays)
    with pytest.raises(NeuralDataError, match=r"pickled\.npz: .*object \(pickled\) arrays"):
        load_recordings(tmp_path / "pickled.npz")
    np.savez(tmp_path / "badbins.npz", data=da.values, region=da.region.values,
             **{**arrays, "time_bin_end": np.array([60.0, 110.0])})
    with pytest.raises(NeuralDataError, match=r"badbins\.npz: 1 problem.*\n.*end <= start"):
        load_recordings(tmp_path / "badbins.npz")
    save_recordings(da, tmp_path / "ok.nc")
    with pytest.raises(NeuralDataError, match=r"ok\.nc: options \['bin_ms'\] apply only to \.nwb"):
        load_recordings(tmp_path / "ok.nc", bin_ms=5)


# --- NWB -------------------------------------------------------------------------------------

# presentations as written (table order): onset s, stimulus. Onset order: a@0.1, b@0.2, b@0.5, a@0.7.
PRESENTATIONS = [(0.1, "a"), (0.5, "b"), (0.7, "a"), (0.2, "b")]
# spikes on bin edges: 0.1 + 0.02 and 0.2 + 0.01 round *above* 0.12 and 0.21 in floating point.
SPIKES = [[0.0999, 0.1, 0.11, 0.12, 0.1299, 0.13, 0.21, 0.505],
          [0.72, 0.7, 0.5199, 0.729, 0.71, 0.2],  # unsorted on purpose
          []]
# bins [0, 10), [10, 20), [20, 30) ms; presentations in onset order; counted by hand
EXPECTED = np.array([
    [[1, 1, 2], [0, 0, 0], [0, 0, 0]],  # a, rep 0, onset 0.1
    [[0, 1, 0], [1, 0, 0], [0, 0, 0]],  # b, rep 0, onset 0.2
    [[1, 0, 0], [0, 1, 0], [0, 0, 0]],  # b, rep 1, onset 0.5
    [[0, 0, 0], [1, 1, 2], [0, 0, 0]],  # a, rep 1, onset 0.7
], dtype=float)


def _nwbfile():
    pynwb = pytest.importorskip("pynwb", reason="pynwb not installed (extra [nwb]); NWB tests skipped")
    return pynwb, pynwb.NWBFile(session_description="test", identifier="t",
                                session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc))


def _write(pynwb, nwbfile, path):
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return path


def _presentations(pynwb, rows, name="presentations", column="stimulus_id"):
    table = pynwb.epoch.TimeIntervals(name=name, description="stimulus presentations")
    table.add_column(column, "image shown")
    for onset, stim in rows:
        table.add_row(start_time=onset, stop_time=onset + 0.1, **{column: stim})
    return table


@pytest.fixture(scope="module")
def nwb_path(tmp_path_factory):
    pynwb, f = _nwbfile()
    device = f.create_device("probe")
    group = f.create_electrode_group("shank", description="one shank", location="V4", device=device)
    for loc in ["V4", "IT"]:
        f.add_electrode(group=group, location=loc)
    for spikes, electrode in zip(SPIKES, [0, 1, 1]):
        f.add_unit(spike_times=spikes, electrodes=[electrode])
    f.add_time_intervals(_presentations(pynwb, PRESENTATIONS))
    return _write(pynwb, f, tmp_path_factory.mktemp("nwb") / "session.nwb")


def test_read_nwb_counts_on_bin_edges(nwb_path):
    from tnnspec.neural.nwb import read_nwb

    da = read_nwb(nwb_path, bin_ms=10, start_ms=0, stop_ms=30)
    np.testing.assert_array_equal(da.values, EXPECTED)
    assert list(da.stimulus_id.values) == ["a", "b", "b", "a"]
    assert list(da.repetition.values) == [0, 0, 1, 1]
    assert list(da.neuroid_id.values) == ["0", "1", "2"]
    assert list(da.region.values) == ["V4", "IT", "IT"]  # from the units' electrodes
    np.testing.assert_array_equal(bins(da), [[0, 10], [10, 20], [20, 30]])
    assert da.attrs["presentations"] == "presentations"
    # the same through load_recordings, options passed on
    assert load_recordings(nwb_path, bin_ms=10, stop_ms=30).identical(da)


def test_read_nwb_matches_a_simple_loop(nwb_path):
    from tnnspec.neural.nwb import read_nwb

    da = read_nwb(nwb_path, bin_ms=2.5, start_ms=-5, stop_ms=40)
    onsets = sorted(o for o, _ in PRESENTATIONS)
    edges_us = [-5000 + 2500 * i for i in range(19)]
    expected = np.zeros((4, 3, 18))
    for p, onset in enumerate(onsets):
        for u, spikes in enumerate(SPIKES):
            for t in spikes:
                rel_us = round((t - onset) * 1e6)  # exact integer µs: all test times are multiples of 0.1 ms
                for b in range(18):
                    expected[p, u, b] += edges_us[b] <= rel_us < edges_us[b + 1]
    np.testing.assert_array_equal(da.values, expected)
    assert da.sizes["time_bin"] == 18 and bins(da)[0, 0] == -5


def test_read_nwb_units_location_column_and_neuroid_id(tmp_path):
    from tnnspec.neural.nwb import read_nwb

    pynwb, f = _nwbfile()
    f.add_unit_column("location", "brain area")
    f.add_unit_column("neuroid_id", "name")
    f.add_unit(spike_times=[1.005], location="V1", neuroid_id="e1")
    f.add_unit(spike_times=[1.015, 2.0], location="V2", neuroid_id="e2")
    f.add_time_intervals(_presentations(pynwb, [(1.0, 7), (2.0, 7)], name="stims", column="image"))
    path = _write(pynwb, f, tmp_path / "loc.nwb")
    da = read_nwb(path, stop_ms=20, stimulus_column="image")
    assert list(da.region.values) == ["V1", "V2"] and list(da.neuroid_id.values) == ["e1", "e2"]
    assert list(da.stimulus_id.values) == ["7", "7"] and list(da.repetition.values) == [0, 1]
    np.testing.assert_array_equal(da.values, [[[1, 0], [0, 1]], [[0, 0], [1, 0]]])
    assert list(read_nwb(path, stop_ms=20, stimulus_column="image", region_column="neuroid_id").region.values) \
        == ["e1", "e2"]
    with pytest.raises(NeuralDataError, match=r"loc\.nwb: no interval table 'nope' \(tables: stims\)"):
        read_nwb(path, presentations="nope", stimulus_column="image")


def test_read_nwb_errors(tmp_path, nwb_path):
    from tnnspec.neural.nwb import read_nwb

    pynwb, f = _nwbfile()
    f.add_unit_column("location", "brain area")
    f.add_unit(spike_times=[1.0], location="V1")
    f.add_trial(start_time=0.0, stop_time=1.0)
    path = _write(pynwb, f, tmp_path / "nostim.nwb")
    with pytest.raises(NeuralDataError, match=r"nostim\.nwb: no presentation table: .*'stimulus_id' "
                                              r"\(tables: trials\)"):
        read_nwb(path)
    pynwb, f = _nwbfile()
    f.add_unit(spike_times=[1.0])
    f.add_time_intervals(_presentations(pynwb, PRESENTATIONS))
    with pytest.raises(NeuralDataError, match=r"noregion\.nwb: no region for units: .*pass region_column="):
        read_nwb(_write(pynwb, f, tmp_path / "noregion.nwb"))
    pynwb, f = _nwbfile()
    f.add_time_intervals(_presentations(pynwb, PRESENTATIONS))
    with pytest.raises(NeuralDataError, match=r"nounits\.nwb: no units"):
        read_nwb(_write(pynwb, f, tmp_path / "nounits.nwb"))
    (tmp_path / "junk.nwb").write_bytes(b"\x00" * 100)
    with pytest.raises(NeuralDataError, match=r"junk\.nwb: not an NWB file"):
        read_nwb(tmp_path / "junk.nwb")
    with pytest.raises(NeuralDataError, match=r"session\.nwb: bad bins: .*not a multiple"):
        read_nwb(nwb_path, bin_ms=7, stop_ms=250)
    with pytest.raises(NeuralDataError, match=r"session\.nwb: bad bins: need finite bin_ms > 0"):
        read_nwb(nwb_path, bin_ms=0)


# --- stimuli ---------------------------------------------------------------------------------


def _png(path, array):
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def test_stimuli_folder_gray_and_rgb(tmp_path):
    gray = tmp_path / "gray"
    gray.mkdir()
    _png(gray / "b.png", np.full((4, 5), 255))
    _png(gray / "a.png", np.zeros((4, 5)))
    (gray / "notes.txt").write_text("ignored")
    s = load_stimuli(gray)
    assert s.ids == ["a", "b"] and s.images.shape == (2, 1, 4, 5) and s.images.dtype == torch.float32
    assert s.images[0].max() == 0 and s.images[1].min() == 1.0
    assert s.source == str(gray)

    rgb = tmp_path / "rgb"
    rgb.mkdir()
    pixel = np.zeros((3, 2, 4), dtype=np.uint8)
    pixel[..., 0], pixel[..., 3] = 51, 7  # red 0.2, alpha dropped
    Image.fromarray(pixel).save(rgb / "x.png")  # RGBA
    _png(rgb / "y.png", np.full((3, 2, 3), 102))
    s = load_stimuli(rgb)
    assert s.images.shape == (2, 3, 3, 2)
    torch.testing.assert_close(s.images[0, :, 0, 0], torch.tensor([0.2, 0.0, 0.0]))
    torch.testing.assert_close(s.select(["y", "x"]), s.images[[1, 0]])


def test_stimuli_npz_and_select(tmp_path):
    images = np.arange(4 * 2 * 3 * 3, dtype=np.float64).reshape(4, 2, 3, 3)
    np.savez(tmp_path / "stim.npz", images=images, stimulus_id=np.array(["s0", "s1", "s2", "s3"]))
    s = load_stimuli(tmp_path / "stim.npz")
    assert s.images.dtype == torch.float32 and s.images.max() == images.max()  # not rescaled
    torch.testing.assert_close(s.select(["s2", "s0", "s2"]), torch.from_numpy(images[[2, 0, 2]]).float())
    missing = [f"m{i}" for i in range(12)]
    with pytest.raises(NeuralDataError, match=r"^12 stimulus_id\(s\) in data\.nc have no image in .*stim\.npz: "
                                              r"m0, m1, m2, m3, m4, \.\.\.$"):
        s.select(["s1", *missing], source="data.nc")


def test_stimuli_errors(tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ["a", "b", "c"]:
        _png(mixed / f"{name}.png", np.zeros((4, 4)))
    _png(mixed / "d.png", np.zeros((8, 4)))
    _png(mixed / "e.png", np.zeros((4, 4, 3)))
    with pytest.raises(NeuralDataError, match=r"mixed: .*2 differ from the most common \(4x4 gray.*"
                                              r"d\.png \(4x8 gray, mode L\), e\.png \(4x4 color, mode RGB\)"):
        load_stimuli(mixed)
    dup = tmp_path / "dup"
    dup.mkdir()
    _png(dup / "a.png", np.zeros((4, 4)))
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(dup / "a.bmp")
    with pytest.raises(NeuralDataError, match=r"dup: several images share a stimulus_id .*a\.bmp, a\.png"):
        load_stimuli(dup)
    (tmp_path / "empty").mkdir()
    with pytest.raises(NeuralDataError, match=r"empty: no images"):
        load_stimuli(tmp_path / "empty")
    with pytest.raises(NeuralDataError, match=r"nothere: no such folder or file"):
        load_stimuli(tmp_path / "nothere")
    np.savez(tmp_path / "noids.npz", images=np.zeros((2, 1, 2, 2)))
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(NeuralDataError, match=r"junk\.npz: cannot read as \.npz \(not a zip archive\)"):
        load_stimuli(tmp_path / "junk.npz")
    with pytest.raises(NeuralDataError, match=r"noids\.npz: \.npz lacks array\(s\) stimulus_id"):
        load_stimuli(tmp_path / "noids.npz")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(NeuralDataError, match=r"x\.png: cannot read image"):
        load_stimuli(tmp_path / "broken")
    with pytest.raises(NeuralDataError, match=r"here: 1 duplicate stimulus_id\(s\): a"):
        Stimuli(torch.zeros(2, 1, 2, 2), ["a", "a"], "here")
