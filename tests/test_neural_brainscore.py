"""The Brain-Score adapter (tnnspec.neural.brainscore): layout, exact values against
area_activity + bin_activity, trials, errors; and, where brainscore_vision is installed, the real
BrainModel / NeuroidAssembly types."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import tnnspec
from tnnspec.neural import NeuralDataError
from tnnspec.neural.activations import area_activity
from tnnspec.neural.brainscore import TnnspecBrainModel, brain_model
from tnnspec.neural.timemap import TimeMap, bin_activity

SPEC = """
tnnspec: "1.0"
name: tiny_ventral
time: {{dt_ms: 10, steps: 3}}
inputs: {{image: {{shape: [{channels}, 16, 16]}}}}
areas:
  V1: {{level: 1, channels: 4, ops: [relu]}}
  V4: {{level: 2, channels: 4, ops: [relu]}}
  IT: {{level: 3, channels: 3, ops: [relu]}}
edges:
  - {{type: feedforward, source: image, target: V1, delay: 0, transform: [{{conv: {{kernel: 3, stride: 2}}}}]}}
  - {{type: feedforward, source: V1, target: V4, transform: [{{conv: {{kernel: 3, stride: 2}}}}]}}
  - {{type: feedforward, source: V4, target: IT, transform: [{{conv: {{kernel: 3}}}}]}}
  - {{type: lateral, source: IT, target: IT, transform: [{{conv: {{kernel: 3}}}}]}}
  - {{type: feedback, source: IT, target: V4, transform: [{{conv: {{kernel: 1}}}}]}}
{neural}
"""
NEURAL = "neural: {regions: {IT: {area: IT, latency_ms: 5}, V4: {area: V4, latency_ms: [0, 10]}}}"
BINS = [(0, 10), (10, 30), (30, 50)]


def make_net(channels: int = 1, neural: str = NEURAL):
    torch.manual_seed(0)
    return tnnspec.compile(tnnspec.loads(SPEC.format(channels=channels, neural=neural))).eval()


@pytest.fixture(scope="module")
def net():
    return make_net()


@pytest.fixture
def stimuli(tmp_path):
    """Four 16x16 grey PNGs and a DataFrame naming them."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), mode="L").save(p)
        paths.append(str(p))
    frame = pd.DataFrame({"stimulus_id": [f"s{i}" for i in range(4)], "image_file_path": paths,
                          "category": ["a", "b", "a", "b"]})
    return frame, paths


def expected(net, paths, area="IT", latency=5.0, bins=BINS):
    images = torch.from_numpy(np.stack([np.asarray(Image.open(p), dtype=np.float32) / 255 for p in paths]))[:, None]
    tmap = TimeMap(10.0, np.asarray(bins, dtype=float), latency)
    steps = tmap.steps_needed()
    act = area_activity(net, images, [area], steps=steps)[area]
    return bin_activity(act, tmap.weights(steps)).transpose(1, 2, 0)  # [S, D, B]


def test_layout_and_values_match_area_activity(net, stimuli):
    frame, paths = stimuli
    model = TnnspecBrainModel(net)
    assert model.region_area == {"IT": "IT", "V4": "V4"}  # from the spec's neural.regions
    model.start_task(TnnspecBrainModel.Task.passive)
    model.start_recording("IT", BINS)
    assert model.recording["steps"] == 5 and model.recording["latency_ms"] == 5.0  # ceil((50 - 5) / 10)
    out = model.look_at(frame)
    assert out.dims == ("presentation", "neuroid", "time_bin")
    assert out.shape == (4, 3 * 4 * 4, 3)
    assert list(out["stimulus_id"].values) == ["s0", "s1", "s2", "s3"]
    assert list(out["category"].values) == ["a", "b", "a", "b"]
    assert list(out["stimulus_path"].values) == paths
    assert list(out["time_bin_start"].values) == [0, 10, 30] and list(out["time_bin_end"].values) == [10, 30, 50]
    assert out["neuroid_id"].values[0] == "IT.0" and out["neuroid_id"].values[-1] == "IT.47"
    assert set(out["region"].values) == {"IT"}
    assert out["channel"].values[16] == 1 and out["channel_y"].values[5] == 1 and out["channel_x"].values[5] == 1
    assert out.dtype == np.float32
    want = expected(net, paths)
    np.testing.assert_array_equal(out.values, want)
    assert np.abs(want).sum() > 0 and not np.array_equal(want[..., 1], want[..., 2])  # the bins differ


def test_list_of_paths_latency_override_and_identity_regions(net, stimuli):
    _, paths = stimuli
    model = TnnspecBrainModel(net, regions={"V1": "V1"}, latency_ms=0)
    model.start_recording("V1", [(0, 20)])  # a single bin keeps its time_bin dim
    out = model.look_at(paths[:2])
    assert out.shape == (2, 4 * 8 * 8, 1)
    assert list(out["stimulus_id"].values) == paths[:2]
    np.testing.assert_array_equal(out.values, expected(net, paths[:2], "V1", 0.0, [(0, 20)]))
    # without neural.regions, areas named like Brain-Score regions map to themselves
    plain = TnnspecBrainModel(make_net(neural=""))
    assert plain.region_area == {"V1": "V1", "V4": "V4", "IT": "IT"}


def test_images_are_converted_and_resized_with_pil(tmp_path, net):
    p = tmp_path / "big.png"
    rgb = np.random.default_rng(1).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb, mode="RGB").save(p)
    ref = tmp_path / "ref.png"
    Image.open(p).convert("L").resize((16, 16), Image.Resampling.BILINEAR).save(ref)
    model = TnnspecBrainModel(net)
    model.start_recording("IT", BINS)
    np.testing.assert_array_equal(model.look_at([str(p)]).values, expected(net, [str(ref)]))
    # a 3-channel input gets grey images repeated over its channels
    net3 = make_net(channels=3)
    m3 = TnnspecBrainModel(net3)
    m3.start_recording("IT", BINS)
    grey = str(tmp_path / "grey.png")
    Image.fromarray(rgb[:16, :16, 0], mode="L").save(grey)
    x = torch.from_numpy(rgb[:16, :16, 0].astype(np.float32) / 255)[None, None].expand(1, 3, 16, 16)
    tmap = TimeMap(10.0, np.asarray(BINS, float), 5.0)
    act = area_activity(net3, x, ["IT"], steps=5)["IT"]
    np.testing.assert_array_equal(m3.look_at([grey]).values, bin_activity(act, tmap.weights(5)).transpose(1, 2, 0))


def test_trials(net, stimuli):
    frame, _ = stimuli
    model = TnnspecBrainModel(net)
    model.start_recording("IT", BINS)
    one = model.look_at(frame)
    # deterministic: like Brain-Score's extractor, number_of_trials alone does not repeat
    np.testing.assert_array_equal(model.look_at(frame, number_of_trials=2).values, one.values)
    two = model.look_at(frame, number_of_trials=2, require_variance=True)
    assert two.sizes["presentation"] == 8
    assert list(two["stimulus_id"].values) == ["s0", "s0", "s1", "s1", "s2", "s2", "s3", "s3"]
    assert list(two["repetition"].values) == [0, 1] * 4
    np.testing.assert_array_equal(two.values[0::2], one.values)
    np.testing.assert_array_equal(two.values[1::2], one.values)


def test_duplicate_stimuli_run_once(net, stimuli):
    frame, paths = stimuli
    model = TnnspecBrainModel(net)
    model.start_recording("IT", BINS)
    out = model.look_at([paths[1], paths[0], paths[1]])
    np.testing.assert_array_equal(out.values[0], out.values[2])
    np.testing.assert_array_equal(out.values[:2], expected(net, [paths[1], paths[0]]))


def test_errors(net, stimuli, tmp_path):
    frame, paths = stimuli
    model = TnnspecBrainModel(net)
    with pytest.raises(NeuralDataError, match="start_recording"):
        model.look_at(frame)
    with pytest.raises(NeuralDataError, match=r"region 'V2'.*mapped: IT -> IT, V4 -> V4"):
        model.start_recording("V2", BINS)
    with pytest.raises(NeuralDataError, match=r"2 candidates.*latency_ms=\{'V4'"):
        model.start_recording("V4", BINS)
    TnnspecBrainModel(net, latency_ms={"V4": 10}).start_recording("V4", BINS)  # an explicit latency resolves it
    with pytest.raises(ValueError, match="end after it starts"):
        model.start_recording("IT", [(10, 10)])
    with pytest.raises(ValueError, match="needs time_bins"):
        model.start_recording("IT")
    with pytest.raises(ValueError, match="number pairs"):
        model.start_recording("IT", [(0, 10, 20)])
    with pytest.raises(NotImplementedError, match="neural activity only"):
        model.start_task(TnnspecBrainModel.Task.label, "imagenet")
    with pytest.raises(ValueError, match="unknown task"):
        model.start_task("dance")
    model.start_recording("IT", BINS)
    with pytest.raises(NeuralDataError, match="no 'stimulus_id' column"):
        model.look_at(frame.drop(columns="stimulus_id"))
    with pytest.raises(NeuralDataError, match="no image paths"):
        model.look_at(frame.drop(columns="image_file_path"))
    with pytest.raises(NeuralDataError, match="no such image file"):
        model.look_at([str(tmp_path / "missing.png")])
    with pytest.raises(NeuralDataError, match="not one path"):
        model.look_at(paths[0])
    (tmp_path / "junk.png").write_text("not an image")
    with pytest.raises(NeuralDataError, match="cannot read image"):
        model.look_at([str(tmp_path / "junk.png")])
    with pytest.raises(ValueError, match="unknown area"):
        TnnspecBrainModel(net, regions={"IT": "PFC"})
    with pytest.raises(ValueError, match="not mapped"):
        TnnspecBrainModel(net, latency_ms={"V1": 3})
    with pytest.raises(ValueError, match="image_size=32"):
        TnnspecBrainModel(net, image_size=32)


def test_import_loads_neither_brainscore_nor_torch():
    """A fresh interpreter (this process may have imported them already)."""
    code = ("import sys, tnnspec.neural.brainscore; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'brainscore_vision', 'brainio', 'brainscore_core', 'torch'}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_brain_model_without_brainscore_is_the_plain_adapter(net):
    if _has_brainscore():
        pytest.skip("brainscore_vision is installed: test_real_brainscore_vision covers brain_model")
    model = brain_model(net, identifier="x", visual_degrees=4)
    assert type(model) is TnnspecBrainModel and model.identifier == "x" and model.visual_degrees() == 4


def _has_brainscore() -> bool:
    import importlib.util

    return importlib.util.find_spec("brainscore_vision") is not None


def test_real_brainscore_vision(net, stimuli):
    bv = pytest.importorskip("brainscore_vision.model_interface",
                             reason="brainscore_vision is not installed (it lives in its own environment)")
    from tnnspec.neural.brainscore import _neuroid_assembly_class

    frame, paths = stimuli
    model = brain_model(net, identifier="tiny")
    assert isinstance(model, bv.BrainModel) and isinstance(model, TnnspecBrainModel)
    assert model.identifier == "tiny" and model.visual_degrees() == 8.0
    model.start_task(bv.BrainModel.Task.passive)
    with pytest.raises(NotImplementedError):
        model.start_task(bv.BrainModel.Task.probabilities, frame)
    model.start_recording(bv.BrainModel.RecordingTarget.IT, BINS)
    cls = _neuroid_assembly_class()
    stimulus_set = _stimulus_set(frame)
    out = model.look_at(stimulus_set, number_of_trials=1)
    assert cls is not None and isinstance(out, cls)
    assert set(out.dims) == {"presentation", "neuroid", "time_bin"}
    assert list(out["time_bin"].to_index().names) == ["time_bin_start", "time_bin_end"]
    np.testing.assert_array_equal(out.transpose("presentation", "neuroid", "time_bin").values, expected(net, paths))
    one = out.sel(time_bin=(10, 30))
    assert one.sizes["presentation"] == 4
    np.testing.assert_array_equal(out.sel(stimulus_id="s2").values.squeeze(), expected(net, paths)[2])
    # Brain-Score's own alignment of per-step bins onto wider ones agrees with recording those directly
    from brainscore_vision.model_helpers.brain_transformation.temporal import assembly_time_align

    model.start_recording("IT", [(5 + 10 * t, 15 + 10 * t) for t in range(6)])
    per_step = model.look_at(stimulus_set)
    target = [(5, 25), (15, 45), (20, 60)]
    aligned = assembly_time_align(per_step, target).transpose("presentation", "neuroid", "time_bin")
    model.start_recording("IT", target)
    np.testing.assert_allclose(aligned.values, model.look_at(stimulus_set).values, rtol=1e-5, atol=1e-7)


def _stimulus_set(frame):
    for name in ("brainscore_core.supported_data_standards.brainio.stimuli", "brainio.stimuli"):
        try:
            StimulusSet = __import__(name, fromlist=["StimulusSet"]).StimulusSet
            break
        except ImportError:
            continue
    s = StimulusSet(frame.drop(columns="image_file_path"))
    s.stimulus_paths = dict(zip(frame["stimulus_id"], frame["image_file_path"]))
    s.identifier = "tnnspec-test"
    return s
