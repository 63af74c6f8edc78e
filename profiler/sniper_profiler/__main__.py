"""`sniper-profiler` entry point (filled in by the profiler issue)."""

import sys


def main() -> int:
    print("sniper-profiler: not implemented yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
