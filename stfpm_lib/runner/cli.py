"""The front door: ``stfpm <command>`` for everything a user runs (also ``python -m stfpm_lib.runner.cli``).

Commands::

    train | predict | evaluate          one category, without notebooks
    run | reproduce | report | study    the notebook runner (:mod:`stfpm_lib.runner.papermill_runner`;
                                       ``python -m stfpm_lib.batch`` is an alias)
    data list|convert|verify|...       datasets (:mod:`stfpm_lib.runner.data_commands`; alias ``python -m stfpm_lib.data``)
    bench metrics|speed|bootstrap|figures  benchmarks that print their figures (alias ``python -m stfpm_lib.bench``)

Overrides are ``-p KEY VALUE`` everywhere (papermill's syntax); ``--set KEY=VALUE`` and ``--param
KEY=VALUE`` still work for one release, with a deprecation message. Examples::

    stfpm train --data-root $MVTEC_ROOT --category bottle --out runs/bottle --preset official \\
        -p epochs 200 -p layers layer1,layer2,layer3
    stfpm predict --checkpoint runs/bottle/checkpoint.pt
    stfpm evaluate --predictions runs/bottle/predictions_test.npz
    stfpm reproduce --categories bottle -p epochs 200

Bad input (unknown preset or key, missing data, unusable weights, a damaged checkpoint, an
output folder that cannot be written or a full disk) prints one message on stderr and exits
with status 2, without a traceback; a run that fails leaves no ``checkpoint.pt`` behind (it is written only when training has finished).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import MASK_RULES, STFPMConfig, parse_fields
from .data_commands import add_data_commands, run_data_command
from .errors import UsageError, guarded
from .papermill_runner import add_batch_commands, run_command

__all__ = ["main", "build_parser", "parse_set"]

# The commands import the torch-based layers (engine, records.evaluation, data) inside their functions
# ("lazy: no torch for --help"): ``stfpm --help`` and usage errors answer at once, without loading torch.


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``["epochs=2", "layers=layer1,layer2", "crop_size=null"]`` -> typed overrides.

    Each value is typed for its field by :func:`stfpm_lib.config.parse_field` (``loss_half=no``
    is ``False``, ``lr=abc`` raises ``ConfigError`` naming ``lr``); unknown keys raise.

    Parameters
    ----------
    items : sequence of str
        ``key=value`` strings of ``--set``.

    Returns
    -------
    dict of str to Any
        Typed config overrides.
    """
    out: dict[str, str] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set expects key=value, got {item!r}")
        out[key] = raw
    return parse_fields(out)


def build_parser() -> argparse.ArgumentParser:
    """The ``stfpm`` parser: every command a user runs.

    Returns
    -------
    argparse.ArgumentParser
        With one sub-command per command (see the module docstring).
    """
    parser = argparse.ArgumentParser(prog="stfpm", description="STFPM reproducibility study: every command.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_single_run_commands(sub)
    add_batch_commands(sub)
    data = sub.add_parser("data", help="datasets: list, convert to the MVTec AD layout, verify, the demo")
    add_data_commands(data.add_subparsers(dest="data_command", required=True))
    bench = sub.add_parser("bench", help="benchmarks that print their figures: metrics, speed, bootstrap, figures",
                           add_help=False)
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="NAME [options]: metrics, speed, bootstrap or figures")
    return parser


def _add_single_run_commands(sub: argparse._SubParsersAction) -> None:

    tr = sub.add_parser("train", help="train a student for one category; writes OUT/checkpoint.pt")
    tr.add_argument("--data-root", default=None, help="MVTec-layout root (default: $MVTEC_ROOT)")
    tr.add_argument("--category", required=True)
    tr.add_argument("--out", required=True, help="output directory of the run")
    tr.add_argument("--preset", default=None, help="official (default), anomalib, hcw or xia")
    tr.add_argument("--config", default=None, help="a .json/.yaml config file (instead of --preset)")
    tr.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                    help="override a config field (repeatable)")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="deprecated spelling of -p KEY VALUE")
    tr.add_argument("--no-resume", action="store_true", help="start afresh even if OUT has a run")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.add_argument("--predict", action="store_true", help="also write predictions_test.npz afterwards")

    pr = sub.add_parser("predict", help="anomaly maps and scores of a split, saved to one .npz")
    pr.add_argument("--checkpoint", required=True)
    pr.add_argument("--data-root", default=None, help="default: the one recorded in the checkpoint")
    pr.add_argument("--category", default=None, help="default: the one recorded in the checkpoint")
    pr.add_argument("--out", default=None, help="default: predictions_<split>.npz next to the checkpoint")
    pr.add_argument("--split", default="test", choices=["test", "val", "train"])
    pr.add_argument("--device", default=None, help="auto, cpu or cuda (default: the checkpoint's)")
    pr.add_argument("--batch-size", type=int, default=None, help="a positive integer (default: eval_batch_size)")
    pr.add_argument("--float16", action="store_true",
                    help="store maps as float16 (half the size, for figures only: evaluate refuses them)")
    pr.add_argument("--float32", action="store_true", help="store maps as float32 (the default)")
    pr.add_argument("--expect-config", default=None, metavar="FILE",
                    help="a .json/.yaml config the checkpoint must match (backbone, layers, teacher weights)")
    pr.add_argument("--no-progress", action="store_true")

    ev = sub.add_parser("evaluate", help="metrics of a predictions file")
    ev.add_argument("--predictions", required=True)
    ev.add_argument("--val-predictions", default=None,
                    help="normal validation predictions for the *_val F1 thresholds "
                         "(default: predictions_val.npz beside --predictions, if present)")
    ev.add_argument("--mask-rule", default=None, choices=list(MASK_RULES),
                    help="re-binarise the masks (default: the run's rule, stored in the file)")
    ev.add_argument("--original-resolution", action="store_true",
                    help="also AU-PRO and pixel AUROC at the original image resolution (slow for 1024² images)")
    ev.add_argument("--json", default=None, help="also write the metrics to this JSON file")


def _config_from_args(args: argparse.Namespace):
    """``--config FILE`` or ``--preset NAME`` (default ``official``), then the ``--set`` overrides."""
    if args.config and args.preset:
        raise UsageError("give either --config or --preset, not both (a config file names its preset)")
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise UsageError(f"config file not found: {path}")
        cfg = STFPMConfig.from_file(path)
    else:
        cfg = STFPMConfig.from_preset(args.preset or "official")
    if args.set:
        print("warning: --set KEY=VALUE is deprecated; use -p KEY VALUE", file=sys.stderr)
    overrides = parse_set(args.set)
    given = [key for key, _ in args.parameter] + list(overrides)
    twice = sorted({key for key in given if given.count(key) > 1})
    if twice:
        raise UsageError(f"config field {twice[0]!r} given twice")
    overrides.update(parse_fields(dict(args.parameter)))
    return cfg.replace(**overrides) if overrides else cfg


def _cmd_train(args: argparse.Namespace) -> int:
    from ..engine.training import fit  # lazy: no torch for --help

    cfg = _config_from_args(args)
    result = fit(cfg, args.data_root, args.category, args.out, resume=not args.no_resume,
                 progress=not args.no_progress)
    h = result.history
    print(f"checkpoint: {result.checkpoint_path}")
    print(f"epochs: {len(h)}  kept epoch: {result.best_epoch} (selection={cfg.selection})  "
          f"train time: {result.train_time_s:.1f} s  teacher: {result.teacher_weights.get('name')}")
    if args.predict:
        from ..engine.inference import predict  # lazy, as above

        print(f"predictions: {predict(result.checkpoint_path, args.data_root, args.category, progress=not args.no_progress)}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from ..engine.inference import predict  # lazy: no torch for --help

    expect = None
    if args.expect_config:
        if not Path(args.expect_config).is_file():
            raise UsageError(f"config file not found: {args.expect_config}")
        expect = STFPMConfig.from_file(args.expect_config)
    path = predict(args.checkpoint, args.data_root, args.category, args.out, split=args.split, device=args.device,
                   batch_size=args.batch_size, progress=not args.no_progress,
                   maps_dtype="float16" if args.float16 and not args.float32 else "float32", expect=expect)
    print(f"predictions: {path}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ..records.evaluation import evaluate_predictions, write_metrics_json  # lazy: no torch for --help
    from ..records.predictions import load_predictions

    start = time.perf_counter()
    pred = load_predictions(args.predictions)
    val_path = Path(args.val_predictions) if args.val_predictions else Path(args.predictions).with_name(
        "predictions_val.npz")
    use_val = args.val_predictions is not None or (
        val_path.is_file() and val_path.resolve() != Path(args.predictions).resolve())
    val = load_predictions(val_path) if use_val else None
    ev = evaluate_predictions(pred, val_predictions=val, original_resolution=args.original_resolution,
                              mask_rule=args.mask_rule)
    elapsed = time.perf_counter() - start
    print(f"{pred.category} ({pred.split}, {len(pred)} images, teacher {pred.teacher_weights.get('name')}, "
          f"masks {ev.mask_rule}{', val thresholds from ' + str(val_path) if use_val else ''})")
    width = max(len(k) for k in ev.metrics)
    for key, value in ev.metrics.items():
        print(f"{key:<{width}}  {value:.6g}")
    print()
    print(ev.per_defect_type.to_string(float_format=lambda v: f"{v:.4f}"))
    if args.json:
        write_metrics_json(args.json, metrics=ev.metrics, config=pred.config, teacher_weights=pred.teacher_weights,
                           dataset=pred.dataset, wall_time_s=elapsed, per_defect_type=ev.per_defect_type,
                           extra={"predictions": str(args.predictions), "mask_rule": ev.mask_rule,
                                  "val_predictions": str(val_path) if use_val else None})
    return 0


def _cmd_bench(argv: list[str]) -> int:
    from ..bench.__main__ import main as bench_main  # lazy: a benchmark may load torch

    return bench_main(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stfpm`` console script; returns the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments; ``None`` reads ``sys.argv``.

    Returns
    -------
    int
        Exit status: 0 on success, 1 when a notebook or job failed, 2 for a user error, 130 when
        interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # the benchmarks parse their own options (--help included)
        return guarded("stfpm bench", lambda: _cmd_bench(argv[1:]))
    args = build_parser().parse_args(argv)  # argparse itself exits with 2 on bad usage
    if args.command in ("run", "reproduce", "report", "study"):
        return run_command(args, prog="stfpm")
    if args.command == "data":
        return guarded(f"stfpm data {args.data_command}", lambda: run_data_command(args))
    commands = {"train": _cmd_train, "predict": _cmd_predict, "evaluate": _cmd_evaluate}
    return guarded(f"stfpm {args.command}", lambda: commands[args.command](args),
                   interrupted="interrupted (a training run resumes from last.pt)")


if __name__ == "__main__":
    sys.exit(main())
