"""Training, checkpoints, exact resume, evaluation and the train/evaluate commands (CPU, fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from checkpoint_helpers import assert_same_checkpoint
from safetensors.torch import load_file

import tnnspec
from tnnspec.train import checkpoint as ckpt
from tnnspec.train.__main__ import main as train_main
from tnnspec.train.data import OccludedDigits
from tnnspec.train.evaluate import evaluate, format_table
from tnnspec.train.trainer import (
    Trainer,
    epoch_order,
    load_for_eval,
    train,
    with_overrides,
)

SPEC = """\
tnnspec: "1.0"
name: tiny
time: {steps: 3, default_delay: sweep}
inputs:
  image: {shape: [1, 16, 16]}
areas:
  V1: {channels: 8, ops: [relu]}
  IT: {channels: 16, ops: [relu]}
edges:
  - {type: feedforward, source: image, target: V1, transform: [{conv: {kernel: 3, stride: 2}}]}
  - {type: feedforward, source: V1, target: IT, transform: [{conv: {kernel: 3, stride: 2}}]}
  - {type: lateral, source: IT, target: IT, transform: [{conv: {kernel: 3}}]}
readouts:
  logits: {source: IT, head: [{pool: avg}, {linear: 10}]}
training:
  data: {name: digits, occlusion: [0.0, 0.4]}
  batch_size: 16
  lr: 0.01
"""
LEVELS = [0.0, 0.4]


@pytest.fixture(autouse=True)
def one_thread():
    # tiny convolutions: several threads only spin (70x slower on a busy 2-core machine)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def spec(spec_file):
    return tnnspec.load(spec_file)


@pytest.fixture(scope="module")
def data():
    """Small fixed subsets of the real data (size 16, two occlusion levels)."""
    def items(split, n):
        ds = OccludedDigits("digits", split=split, size=16, occlusion=LEVELS, seed=0)
        return [ds[i] for i in range(n)]

    return {"train": items("train", 64), "val": items("val", 40), "test": items("test", 60)}


def _cfg(spec, **kw):
    return with_overrides(spec.training, **kw)


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(spec, data, tmp_path_factory):
    """One short run (2 epochs of 4 steps), shared by the metrics and evaluation tests."""
    out = tmp_path_factory.mktemp("run")
    result = train(spec, _cfg(spec, epochs=2), out_dir=out, progress=False, dataset=data["train"],
                   val_dataset=data["val"])
    return out, result


# ---------------------------------------------------------------- learning
def test_loss_decreases_on_a_fixed_batch(spec, data, tmp_path):
    result = train(spec, _cfg(spec, epochs=30, batch_size=16, lr=0.02), out_dir=tmp_path, progress=False,
                   dataset=data["train"][:16], val_dataset=False)
    losses = [e["loss"] for e in _events(tmp_path) if e["event"] == "step"]
    assert len(losses) == 30 and result["step"] == 30
    assert sum(losses[-5:]) / 5 < 0.85 * sum(losses[:5]) / 5, losses


def test_data_order_is_a_function_of_seed_and_epoch():
    assert torch.equal(epoch_order(3, 1, 50), epoch_order(3, 1, 50))
    assert not torch.equal(epoch_order(3, 1, 50), epoch_order(3, 2, 50))
    assert not torch.equal(epoch_order(3, 1, 50), epoch_order(4, 1, 50))
    assert sorted(epoch_order(3, 1, 50).tolist()) == list(range(50))


def test_image_size_follows_the_spec_unless_given(spec):
    from tnnspec.train.trainer import fit_to_spec

    assert fit_to_spec(spec, spec.training).data.size == 16  # the file sets no size: the input's
    assert fit_to_spec(spec, _cfg(spec, data_size=16)).data.size == 16


# ---------------------------------------------------------------- checkpoints and resume
def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / ckpt.WEIGHTS))


def test_resume_gives_bit_identical_weights(spec, data, tmp_path, monkeypatch):
    kw = dict(progress=False, dataset=data["train"], val_dataset=data["val"])  # 4 steps per epoch
    straight, split, interrupted = tmp_path / "straight", tmp_path / "split", tmp_path / "interrupted"
    train(spec, _cfg(spec, epochs=3, max_steps=6), out_dir=straight, **kw)

    # stopped after 3 steps (mid-epoch), resumed to 6 (across the epoch end)
    first = train(spec, _cfg(spec, epochs=3, max_steps=3), out_dir=split, **kw)
    assert first["step"] == 3 and ckpt.read_meta(split / ckpt.META)["position"]["batch"] == 3
    train(spec, _cfg(spec, epochs=3, max_steps=6), out_dir=split, resume=True, **kw)
    assert_same_checkpoint(straight, split)
    steps = [e["step"] for e in _events(split) if e["event"] == "step"]
    assert steps == [1, 2, 3, 4, 5, 6]

    # Ctrl-C during the 5th step: the checkpoint holds the state after step 4
    real_step, calls = Trainer.step, []

    def step(self, indices):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real_step(self, indices)

    monkeypatch.setattr(Trainer, "step", step)
    with pytest.raises(KeyboardInterrupt):
        train(spec, _cfg(spec, epochs=3, max_steps=6), out_dir=interrupted, **kw)
    assert ckpt.read_meta(interrupted / ckpt.META)["position"]["step"] == 4
    monkeypatch.setattr(Trainer, "step", real_step)
    train(spec, _cfg(spec, epochs=3, max_steps=6), out_dir=interrupted, resume=True, **kw)
    assert_same_checkpoint(straight, interrupted)


def test_checkpoint_of_another_spec_is_refused(spec, spec_file, data, trained, tmp_path, capsys):
    out, _ = trained
    changed = tnnspec.loads(SPEC.replace("IT: {channels: 16", "IT: {channels: 24"), file="changed.yaml")
    with pytest.raises(ckpt.CheckpointError, match="different spec"):
        train(changed, out_dir=out, resume=True, progress=False, dataset=data["train"], val_dataset=False)
    with pytest.raises(ckpt.CheckpointError, match="different spec"):
        load_for_eval(changed, out)

    # the training settings are not part of the identity
    retrained = tnnspec.loads(SPEC.replace("lr: 0.01", "lr: 0.5"))
    assert ckpt.spec_hash(retrained) == ckpt.spec_hash(spec)

    # from the command line: a message and exit status 1, no traceback
    path = tmp_path / "changed.yaml"
    path.write_text(SPEC.replace("IT: {channels: 16", "IT: {channels: 24"))
    capsys.readouterr()
    assert train_main(["train", str(path), "--out", str(out), "--resume", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "different spec" in err and "Traceback" not in err


def test_checkpoint_files_are_complete_and_atomic(trained):
    out, _ = trained
    meta = ckpt.read_meta(out / ckpt.META)
    assert meta["spec_hash"] == ckpt.spec_hash(tnnspec.loads(SPEC))
    assert meta["tnnspec_version"] == tnnspec.__version__
    assert meta["position"] == {"epoch": 2, "batch": 0, "step": 8, "epoch_loss": 0.0, "epoch_correct": 0.0,
                                "epoch_seen": 0}
    assert set(meta["rng"]) >= {"python", "numpy", "torch"}
    assert meta["optimizer"]["type"] == "Adam" and meta["training"]["epochs"] == 2
    assert ckpt.weights_metadata(out / ckpt.WEIGHTS)["spec_hash"] == meta["spec_hash"]
    assert not list(out.glob("*.tmp"))


# ---------------------------------------------------------------- metrics
def test_metrics_jsonl(trained):
    out, result = trained
    events = _events(out)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert kinds.count("step") == 8 and kinds.count("epoch") == 2
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 9))
    assert all({"epoch", "loss", "acc", "lr"} <= set(e) for e in steps)
    epoch = [e for e in events if e["event"] == "epoch"][-1]
    assert len(epoch["val_acc_per_step"]) == 3 and set(epoch["val_acc_per_level"]) == {"0", "0.4"}
    assert 0 <= epoch["val_acc"] <= 1 and epoch["train_loss"] > 0
    assert events[-1]["val_acc"] == result["val_acc"]


# ---------------------------------------------------------------- evaluation
def test_evaluate_per_step_and_level(spec, data, trained):
    out, _ = trained
    net, meta = load_for_eval(spec, out)
    assert meta["position"]["step"] == 8
    r = evaluate(net, spec, data["test"], decoder="threshold", threshold=0.3)
    assert r["n"] == 60 and r["steps"] == 3 and len(r["accuracy_per_step"]) == 3
    assert set(r["levels"]) == {"0", "0.4"}
    assert sum(v["n"] for v in r["levels"].values()) == 60
    assert all(len(v["accuracy_per_step"]) == 3 for v in r["levels"].values())
    assert 0 <= r["mean_decision_step"] <= 2
    expect = sum(v["accuracy_per_step"][-1] * v["n"] for v in r["levels"].values()) / 60
    assert r["accuracy_per_step"][-1] == pytest.approx(expect)
    last = evaluate(net, spec, data["test"])
    assert last["accuracy"] == pytest.approx(last["accuracy_per_step"][-1]) and last["mean_decision_step"] == 2
    table = format_table(r)
    assert "t=0" in table and "t=2" in table and "all" in table


def test_evaluate_command(spec_file, trained, tmp_path, capsys):
    out, _ = trained
    js = tmp_path / "eval.json"
    rc = train_main(["evaluate", str(spec_file), "--checkpoint", str(out / ckpt.WEIGHTS), "--occlusion", "0", "0.4",
                     "--decoder", "max_confidence", "--json", str(js)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "t=2" in text and "max_confidence" in text
    r = json.loads(js.read_text())
    assert r["split"] == "test" and set(r["levels"]) == {"0", "0.4"} and len(r["accuracy_per_step"]) == 3
    assert r["size"] == 16 and r["n"] == sum(v["n"] for v in r["levels"].values())


# ---------------------------------------------------------------- settings files
def test_bad_training_config_gives_located_diagnostics(spec_file, tmp_path, capsys):
    bad = tmp_path / "train.yaml"
    bad.write_text("epochs: 0\nlrr: 0.1\ndata:\n  name: digitz\n")
    assert train_main(["train", str(spec_file), "--config", str(bad), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"{bad}:1:9: error: epochs:" in err
    assert f"{bad}:2:1: error:" in err and "unknown key 'lrr' (did you mean 'lr'?)" in err
    assert f"{bad}:4:9: error: data.name: unknown dataset 'digitz' (did you mean 'digits'?)" in err


def test_training_config_file_and_overrides(spec_file, tmp_path):
    from tnnspec.cli.train import load_training_file

    good = tmp_path / "train.yaml"
    good.write_text("optimizer: sgd\nlr: 0.05\nbatch_size: 8\ndata: {name: digits, occlusion: [0.2]}\n")
    cfg = load_training_file(good)
    assert cfg.optimizer == "sgd" and cfg.batch_size == 8
    cfg = with_overrides(cfg, lr=0.1, data_occlusion=[0.0, 0.4])
    assert cfg.lr == 0.1 and cfg.data.occlusion == [0.0, 0.4] and cfg.optimizer == "sgd"
    assert "size" not in cfg.data.model_fields_set  # still free to follow the spec
    with pytest.raises(ValueError):
        with_overrides(cfg, lr=-1.0)


def test_amp_step_on_cpu(spec, data):
    trainer = Trainer(spec, _cfg(spec), amp=True, dataset=data["train"][:16], val_dataset=False)
    loss, acc = trainer.step(torch.arange(16))
    assert loss == loss and 0 <= acc <= 1


# ---------------------------------------------------------------- execution options
SHARE = (*tnnspec.compile.DEFAULT, "share_constants")


@pytest.mark.parametrize("options", [{"checkpoint": "recursive"}, {"checkpoint": True, "optimize": SHARE}])
def test_network_options_give_the_gradients_of_the_plain_network(spec, data, options):
    plain = Trainer(spec, _cfg(spec), dataset=data["train"][:16], val_dataset=False)
    other = Trainer(spec, _cfg(spec), dataset=data["train"][:16], val_dataset=False, network_options=options)
    assert other.net.checkpoint == options["checkpoint"]
    assert other.net.passes == tnnspec.compile.passes.resolve(options.get("optimize", "default"))
    other.net.load_state_dict(plain.net.state_dict())
    batch = torch.arange(16)
    (loss_a, _), (loss_b, _) = plain.compute_gradients(batch), other.compute_gradients(batch)
    assert abs(loss_a - loss_b) < 1e-6
    for (name, a), (_, b) in zip(plain.net.named_parameters(), other.net.named_parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_train_command_passes_the_execution_options(spec_file, data, tmp_path, monkeypatch):
    from tnnspec.train import trainer

    seen = {}
    monkeypatch.setattr(trainer, "train", lambda *a, **kw: seen.update(kw) or {"step": 0, "epoch": 0, "loss": 0.0})
    rc = train_main(["train", str(spec_file), "--max-steps", "1", "--out", str(tmp_path), "--no-progress",
                     "--activation-checkpointing", "recursive", "--share-constants"])
    assert rc == 0 and seen["network_options"] == {"checkpoint": "recursive", "optimize": SHARE}
