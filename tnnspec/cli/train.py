"""``tnnspec train`` and ``tnnspec evaluate``.

Settings come from the spec's ``training:`` section, or from ``--config FILE`` (a YAML/JSON file
holding just those keys, validated like a spec: mistakes are located ``file:line:col``
diagnostics), then from the command-line options. Problems are reported as messages, never as
tracebacks (exit status 1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _print_diagnostics(diags, stream=None) -> None:
    for d in diags:
        print(d, file=stream or sys.stderr)


def load_training_file(path: str | Path):
    """A training settings file -> :class:`~tnnspec.spec.training.Training`; raises SpecError with
    located diagnostics."""
    from pydantic import ValidationError

    from ..plugins import plugins
    from ..spec.diagnostics import Diagnostic, SpecError
    from ..spec.errors import translate
    from ..spec.source import LMap, read_file
    from ..spec.training import Training

    plugins()  # a plugin's learning rule may be named (a failed plugin is reported with the spec)
    tree = read_file(path)
    if not isinstance(tree, LMap):
        raise SpecError([Diagnostic(str(path), 1, 1, "error",
                                    "a training settings file is a mapping (data, loss, epochs, lr, ...)")])
    if "training" in tree and len(tree) == 1 and isinstance(tree["training"], LMap):
        tree = tree["training"]  # also accept a file holding a `training:` section
    diags = []
    data = tree.get("data")
    if isinstance(data, LMap) and isinstance(data.get("name"), str):  # every problem in one pass
        problem = dataset_problem(data["name"])
        if problem:
            diags.append(Diagnostic.at(data.where_value("name"), "error", f"data.name: {problem}"))
    try:
        cfg = Training.model_validate(tree)
    except ValidationError as exc:
        raise SpecError(translate(exc.errors(), tree, Training) + diags) from None
    if diags:
        raise SpecError(diags)
    return cfg


def dataset_problem(name: str) -> str | None:
    """Why ``name`` is not a dataset (None when it is one)."""
    from ..spec.diagnostics import did_you_mean
    from ..train.data import DATASETS

    if name in DATASETS:
        return None
    return (f"unknown dataset '{name}'{did_you_mean(name, DATASETS)}; known: {', '.join(sorted(DATASETS))} "
            "(register more with tnnspec.train.data.register_dataset)")


def learning_rule_problem(name: str) -> str | None:
    """Why ``name`` is not a registered learning rule (None when it is one)."""
    from ..plugins import plugins
    from ..spec.components import LEARNING_RULES
    from ..spec.diagnostics import did_you_mean

    plugins()  # (loads them; a failed plugin was reported with the spec)
    if name in LEARNING_RULES:
        return None
    return (f"unknown learning rule '{name}'{did_you_mean(name, LEARNING_RULES)}; known: "
            f"{', '.join(sorted(LEARNING_RULES))} (docs/learning_rules.md)")


def _settings(args):
    """(spec, Training) from the spec file, --config and the options; None after printing errors."""
    from pydantic import ValidationError

    from ..api import check_file
    from ..spec.diagnostics import SpecError
    from ..train.trainer import training_config, with_overrides

    spec, diags = check_file(args.spec)
    if spec is None or os.environ.get("RANK", "0") == "0":  # under torchrun: warnings once
        _print_diagnostics(diags)
    if spec is None:
        return None
    if getattr(args, "config", None):
        try:
            cfg = load_training_file(args.config)
        except SpecError as exc:
            _print_diagnostics(exc.diagnostics)
            return None
    else:
        cfg = training_config(spec)
    overrides = dict(data_name=args.data, data_occlusion=args.occlusion, data_size=args.size, seed=args.seed,
                     readout=args.readout, batch_size=getattr(args, "batch_size", None))
    if hasattr(args, "epochs"):  # train
        overrides.update(epochs=args.epochs, max_steps=args.max_steps, lr=args.lr)
    rule = getattr(args, "learning_rule", None)
    if rule is not None:  # the named rule with its default parameters
        problem = learning_rule_problem(rule)
        if problem:
            print(f"error: --learning-rule: {problem}", file=sys.stderr)
            return None
        overrides["learning_rule"] = {"type": rule}
    try:
        cfg = with_overrides(cfg, **overrides)
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            print(f"error: command-line setting {where}: {err['msg']}", file=sys.stderr)
        return None
    problem = dataset_problem(cfg.data.name)
    if problem:
        print(f"error: {'--data' if args.data else 'training.data.name'}: {problem}", file=sys.stderr)
        return None
    return spec, cfg


def _network_options(args) -> dict:
    """Execution options of the compiled network chosen on the command line."""
    options: dict = {}
    if args.activation_checkpointing:
        options["checkpoint"] = {"step": True, "recursive": "recursive"}[args.activation_checkpointing]
    if args.share_constants:
        from ..compile.passes import DEFAULT

        options["optimize"] = (*DEFAULT, "share_constants")
    return options


def _default_device(name: str | None) -> str:
    if name:
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# ---------------------------------------------------------------- train
def run_reporting(call, errors: tuple):
    """``(call(), None)``; or ``(None, exit status)`` after printing a user-caused error (one of
    ``errors``: ``error: message``; a SpecError: its located diagnostics) — 1 — or on Ctrl-C, 130."""
    from ..spec.diagnostics import SpecError

    try:
        return call(), None
    except errors as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None, 1
    except SpecError as exc:
        _print_diagnostics(exc.diagnostics)
        return None, 1
    except KeyboardInterrupt:
        return None, 130


def cmd_train(args) -> int:
    from ..train.checkpoint import CheckpointError
    from ..train.trainer import TrainError, train

    if args.log_every < 1 or (args.checkpoint_every is not None and args.checkpoint_every < 1):
        print("error: --log-every and --checkpoint-every take a number of steps >= 1", file=sys.stderr)
        return 1
    got = _settings(args)
    if got is None:
        return 1
    spec, cfg = got
    out = args.out or str(Path("runs") / spec.name)
    result, code = run_reporting(lambda: train(
        spec, cfg, out_dir=out, device=_default_device(args.device), resume=args.resume,
        progress=not args.no_progress, amp=args.amp, compile=args.compile, log_every=args.log_every,
        checkpoint_every=args.checkpoint_every, network_options=_network_options(args)),
        (TrainError, CheckpointError, ImportError))
    if code is not None:
        return code
    if int(os.environ.get("RANK", "0")) == 0:
        val = f", val acc {100 * result['val_acc']:.1f}%" if "val_acc" in result else ""
        print(f"trained {spec.name}: {result['step']} steps, {result['epoch']} epochs, "
              f"loss {result['loss']:.4f}{val}; checkpoint and metrics in {out}")
    return 0


def add_train_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train a spec on built-in data; checkpoints, metrics.jsonl, --resume",
                       description="Train a spec. Settings: the spec's training: section, or --config, then "
                                   "these options. Runs data-parallel under torchrun.")
    p.add_argument("spec", metavar="SPEC", help="spec file")
    _common(p)
    p.add_argument("--epochs", type=int, help="passes over the training set")
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--out", metavar="DIR", help="output directory (default: runs/<spec name>)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA or CPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network (for GPUs)")
    p.add_argument("--checkpoint-every", type=int, metavar="N", help="also checkpoint every N steps")
    p.add_argument("--activation-checkpointing", choices=["step", "recursive"],
                   help="recompute activations in backward: per step, or from ~log2(T) stored carries "
                        "(memory grows with log T; for long unrolls)")
    p.add_argument("--share-constants", action="store_true",
                   help="compute input-independent updates once per batch (equal to float rounding)")
    p.add_argument("--learning-rule", metavar="NAME",
                   help="learning rule, with its default parameters (replaces the file's): backprop, truncated, "
                        "feedback_alignment, sign_symmetry, kolen_pollack, direct_feedback_alignment, or a plugin's")
    p.add_argument("--log-every", type=int, default=1, metavar="N", help="log every N steps (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(fn=cmd_train)
    return p


def _common(p) -> None:
    p.add_argument("--config", metavar="TRAIN.yaml", help="training settings file (instead of the spec's)")
    p.add_argument("--data", metavar="NAME", help="dataset: digits, mnist5k or a registered one")
    p.add_argument("--occlusion", type=float, nargs="+", metavar="LEVEL", help="occlusion levels, e.g. 0 0.2 0.4")
    p.add_argument("--size", type=int, help="image size (default: the spec's input size)")
    p.add_argument("--batch-size", type=int, help="images per step (global, across processes)")
    p.add_argument("--seed", type=int, help="seed for splits, data order, occluders and weights")
    p.add_argument("--readout", help="readout to use (default: the only one)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")


# ---------------------------------------------------------------- evaluate
def cmd_evaluate(args) -> int:
    from ..spec.diagnostics import SpecError
    from ..train import checkpoint as ckpt
    from ..train.evaluate import DataError, evaluate, format_table
    from ..train.trainer import load_for_eval, make_dataset, fit_to_spec, with_overrides

    if args.decoder == "threshold" and args.threshold is None:
        print("error: --decoder threshold needs --threshold", file=sys.stderr)
        return 1
    got = _settings(args)
    if got is None:
        return 1
    spec, cfg = got
    device = _default_device(args.device)
    try:
        net, meta = load_for_eval(spec, args.checkpoint, device)
        trained = meta.get("training")
        if trained and not args.config:  # the data settings it was trained with (the same test split)
            from ..spec.training import Training

            base = Training.model_validate(trained)
            cfg = with_overrides(base, data_name=args.data, data_occlusion=args.occlusion, data_size=args.size,
                                 seed=args.seed, readout=args.readout, batch_size=args.batch_size)
        cfg = fit_to_spec(spec, cfg)
        dataset = make_dataset(cfg, "test")
        result = evaluate(net, spec, dataset, readout=cfg.readout, decoder=args.decoder,
                          threshold=args.threshold, batch_size=args.batch_size or 256, device=device, amp=args.amp)
    except (ckpt.CheckpointError, DataError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except SpecError as exc:
        _print_diagnostics(exc.diagnostics)
        return 1
    result = {"spec": spec.name, "checkpoint": str(args.checkpoint), "data": cfg.data.name, "split": "test",
              "size": cfg.data.size, "seed": cfg.seed, **result}
    print(f"{spec.name} on {cfg.data.name} (test split, {result['n']} images, {result['steps']} steps)")
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


def add_evaluate_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("evaluate", help="accuracy per step and per occlusion level on the test split",
                       description="Evaluate a trained spec on the test split: accuracy at every step, per "
                                   "occlusion level, and with a decoder over time.")
    p.add_argument("spec", metavar="SPEC", help="spec file")
    p.add_argument("--checkpoint", required=True, metavar="DIR|FILE",
                   help="training output directory, checkpoint.safetensors or checkpoint.json")
    _common(p)
    p.add_argument("--decoder", choices=("last", "mean", "max_confidence", "threshold"), default="last",
                   help="how to read a decision out of the steps (default: last)")
    p.add_argument("--threshold", type=float, metavar="THETA", help="confidence threshold for --decoder threshold")
    p.add_argument("--amp", action="store_true", help="bf16 autocast")
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    p.set_defaults(fn=cmd_evaluate)
    return p
