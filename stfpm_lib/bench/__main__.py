"""``python -m stfpm_lib.bench {metrics,speed,bootstrap,figures} [options]``: benchmarks that print their figures."""

from __future__ import annotations

import sys

USAGE = "usage: python -m stfpm_lib.bench {metrics,speed,bootstrap,figures} [options]  (--help after the name for its options)"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark named by the first argument with the others.

    Parameters
    ----------
    argv : list of str, optional
        ``[name, options...]`` (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The benchmark's exit status; 2 for an unknown or missing name (0 for ``--help``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "metrics":  # only the chosen benchmark is imported (the speed one loads torch)
        from .metrics_bench import main as run
    elif name == "speed":
        from .speed_bench import main as run  # (loads torch)
    elif name == "bootstrap":
        from .bootstrap_bench import main as run  # (NumPy only)
    elif name == "figures":
        from .figures_bench import main as run  # (trains a tiny model first)
    else:
        print(f"unknown benchmark {name!r}. {USAGE}", file=sys.stderr)
        return 2
    return int(run(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
