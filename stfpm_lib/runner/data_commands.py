"""Dataset commands: ``stfpm data <command> ...`` (``python -m stfpm_lib.data`` is an alias).

Commands:
    list        categories and counts an adapter finds
    convert     write an adapter's dataset into the MVTec AD layout (with manifest.json)
    verify      check an MVTec-layout root (masks, sizes, pairing, manifest hashes)
    build-demo  rebuild the embedded demo dataset from PIPED
    check-demo  verify the embedded demo dataset (``--rebuild``: and that a rebuild is identical)
    demo-path   print the embedded demo dataset's root

Examples::

    stfpm data list --adapter piped
    stfpm data convert --adapter visa --root /data/VisA_20220922 --out /data/visa_mvtec --image-format keep
    stfpm data convert --adapter folder --root my_data --out my_mvtec \\
        -p normal_dir ok -p defect_dirs '{"crack": "nok"}' -p mask_dir masks -p mask_template '{stem}.png'
    # one category from several top-level folders, JPEG images with PNG masks beside them, mixed sizes:
    stfpm data convert --adapter folder --root Magnetic-tile-defect --out magnetic_mvtec \\
        -p normal_dir MT_Free/Imgs -p defect_dirs 'MT_*/Imgs' -p mask_template '{stem}.png' \\
        -p mask_threshold 127 --allow-empty-masks

The folder adapter's parameters (``-p KEY VALUE``; ``--param KEY=VALUE`` is deprecated) are those of
:class:`stfpm_lib.data.folder.FolderAdapter` (``docs/datasets.md`` lists them all).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from .errors import guarded

# The data layer (it loads torch) is imported inside the functions that use it: ``stfpm --help`` and usage
# errors answer at once.

__all__ = ["main", "add_data_commands", "run_data_command"]


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value  # plain strings need no quotes


def _param(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--param needs KEY=VALUE, got {text!r}")
    return key.strip(), _json_or_text(value)


def _adapter(args: argparse.Namespace):
    from ..data.adapters import get_adapter  # lazy: see the note at the imports
    from ..data.mvtec import DataError

    if args.param:
        print("warning: --param KEY=VALUE is deprecated; use -p KEY VALUE", file=sys.stderr)
    params = dict(args.param or [])
    for key, value in args.parameter or ():
        if key in params:
            raise DataError(f"adapter parameter {key!r} given twice")
        params[key] = _json_or_text(value)
    if args.root is not None:
        params["root"] = args.root
    try:
        return get_adapter(args.adapter, **params)
    except (TypeError, ValueError) as exc:  # a bad adapter parameter is the user's to fix, named in the message
        raise exc if isinstance(exc, DataError) else DataError(str(exc)) from exc


def _categories(text: str | None) -> list[str] | None:
    return None if text in (None, "", "all") else [c.strip() for c in text.split(",") if c.strip()]


def add_data_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``list``, ``convert``, ``verify``, ``build-demo``, ``check-demo`` and ``demo-path`` to ``sub``.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The sub-parsers of ``stfpm data`` (or of ``python -m stfpm_lib.data``); the command is
        stored as ``data_command``.
    """

    def adapter_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--adapter", required=True, help="mvtec | visa | folder | piped")
        p.add_argument("--root", default=None, help="dataset root (piped: default ../shared/data/PIPED or $PIPED_ROOT)")
        p.add_argument("--param", action="append", type=_param, metavar="KEY=VALUE",
                       help="deprecated spelling of -p KEY VALUE")
        p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("KEY", "VALUE"), default=[],
                       help="adapter parameter; VALUE is JSON if it parses, else a string (repeatable). folder: "
                            "normal_dir, defect_dirs (mapping, folder, glob or list), mask_dir (folder, mapping; may contain "
                            "{defect_type}; null: masks beside their images), mask_template, stem_replace, "
                            "ignore_leading_zeros, mask_polarity, mask_threshold, categories, extensions")

    p_list = sub.add_parser("list", help="categories and counts an adapter finds")
    adapter_args(p_list)

    p_conv = sub.add_parser("convert", help="write an adapter's dataset into the MVTec AD layout")
    adapter_args(p_conv)
    p_conv.add_argument("--out", required=True, help="new dataset root (must not exist unless --overwrite)")
    p_conv.add_argument("--categories", default=None, help="comma-separated, or 'all' (default)")
    p_conv.add_argument("--n-train", type=int, default=None,
                        help="normal training images (unsplit normals: default all but a third)")
    p_conv.add_argument("--n-test-good", type=int, default=None,
                        help="normal test images (unsplit normals: default a third)")
    p_conv.add_argument("--max-defects", type=int, default=None, help="at most this many images per defect type")
    p_conv.add_argument("--seed", type=int, default=0, help="seed of the split and subsets (default 0)")
    p_conv.add_argument("--image-format", choices=("png", "keep"), default="png",
                        help="png: re-encode losslessly (default); keep: copy PNG/JPEG byte for byte")
    p_conv.add_argument("--size-mismatch", choices=("allow", "skip", "error"), default="allow",
                        help="images of different sizes in a category: allow (default; each is resized to "
                             "image_size, its mask must match it), skip (keep the most common size; refused when "
                             "it drops half a category or more), error")
    p_conv.add_argument("--normal-only", choices=("skip", "error", "keep"), default="skip",
                        help="categories without anomalous images: skip (default), error, keep")
    p_conv.add_argument("--allow-empty-masks", action="store_true",
                        help="accept defect images whose mask has no defect pixel (listed in manifest.json)")
    p_conv.add_argument("--overwrite", action="store_true", help="replace an existing --out (once the new one is done)")

    p_ver = sub.add_parser("verify", help="check an MVTec-layout root")
    p_ver.add_argument("root")
    p_ver.add_argument("--no-manifest", action="store_true", help="do not check manifest.json hashes")

    p_build = sub.add_parser("build-demo", help="rebuild the embedded demo dataset from PIPED")
    p_build.add_argument("--out", default=None, help="default: the package's demo_data/piped")
    p_build.add_argument("--piped-root", default=None)
    p_build.add_argument("--overwrite", action="store_true")

    p_check = sub.add_parser("check-demo", help="verify the embedded demo dataset")
    p_check.add_argument("--rebuild", action="store_true", help="also rebuild from PIPED and compare pixels")
    p_check.add_argument("--piped-root", default=None)

    sub.add_parser("demo-path", help="print the embedded demo dataset's root")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stfpm_lib.data", description=__doc__.split("\n\n")[0])
    add_data_commands(parser.add_subparsers(dest="data_command", required=True))
    return parser


def _list(adapter) -> int:
    """Print each category's counts and index notes; 2 if a category does not index (errors on stderr)."""
    from ..data.mvtec import DataError  # lazy: see the note at the imports

    failed = 0
    for category in adapter.categories():
        try:
            index = adapter.index(category)
        except DataError as exc:
            failed += 1
            print(f"error: {category}: {exc}", file=sys.stderr)
            continue
        print(f"{category}: {index.counts()}")
        for note in index.notes:
            print(f"    {note}")
    return 2 if failed else 0


def run_data_command(args: argparse.Namespace) -> int:
    """Run a parsed data command (``args.data_command``); data errors raise (the caller reports them).

    Parameters
    ----------
    args : argparse.Namespace
        Parsed by a parser that :func:`add_data_commands` built.

    Returns
    -------
    int
        Exit status (2 when ``list`` finds a category that does not index).
    """
    from ..data.convert import convert_to_mvtec, verify_mvtec_root  # lazy: see the note at the imports
    from ..data.demo import build_demo, check_demo, demo_root

    command = args.data_command
    if command == "list":
        return _list(_adapter(args))
    if command == "convert":
        out = convert_to_mvtec(
            _adapter(args), args.out, categories=_categories(args.categories), n_train=args.n_train,
            n_test_good=args.n_test_good, max_defects_per_type=args.max_defects, seed=args.seed,
            image_format=args.image_format, size_mismatch=args.size_mismatch, normal_only=args.normal_only,
            allow_empty_masks=args.allow_empty_masks, overwrite=args.overwrite, log=print)
        print(f"wrote {out}")
    elif command == "verify":
        for category, counts in verify_mvtec_root(args.root, check_manifest=not args.no_manifest).items():
            print(f"{category}: {counts}")
        print("ok")
    elif command == "build-demo":
        print(f"wrote {build_demo(args.out, piped_root=args.piped_root, overwrite=args.overwrite, log=print)}")
    elif command == "check-demo":
        for category, counts in check_demo(args.piped_root, rebuild=args.rebuild).items():
            print(f"{category}: {counts}")
        print("ok" + (" (rebuild identical)" if args.rebuild else ""))
    elif command == "demo-path":
        print(demo_root())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stfpm_lib.data``: run one command; 2 for a data error, with its message on stderr.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments; ``None`` reads ``sys.argv``.

    Returns
    -------
    int
        Exit status.
    """
    args = _build_parser().parse_args(argv)
    return guarded(f"python -m stfpm_lib.data {args.data_command}", lambda: run_data_command(args))
