"""``python -m stfpm_lib.bench {metrics,speed,bootstrap} [options]``: benchmarks that print their figures."""

from __future__ import annotations

import sys

USAGE = "usage: python -m stfpm_lib.bench {metrics,speed,bootstrap} [options]  (--help after the name for its options)"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "metrics":
        from .metrics_bench import main as run
    elif name == "speed":
        from .speed_bench import main as run
    elif name == "bootstrap":
        from .bootstrap_bench import main as run
    else:
        print(f"unknown benchmark {name!r}. {USAGE}", file=sys.stderr)
        return 2
    return int(run(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
