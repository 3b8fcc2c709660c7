"""Run a command while every core is kept busy: ``python scripts/under_load.py [--hogs N] [--max-seconds S] -- CMD...``.

For trying the test suite the way a busy laptop or CI runner runs it. The CPU hogs are plain busy
loops in child processes, one per core by default; each stops by itself after ``--max-seconds``
(default 3600) and all are stopped as soon as the command ends. The exit code is the command's.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time


def _hog(seconds: float) -> None:
    end = time.monotonic() + seconds
    count = 0
    while time.monotonic() < end:
        count += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 2, help="busy processes (default: one per core)")
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="longest a hog runs (default 3600)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    hogs = [multiprocessing.Process(target=_hog, args=(args.max_seconds,), daemon=True) for _ in range(args.hogs)]
    for hog in hogs:
        hog.start()
    print(f"under_load: {args.hogs} CPU hog(s) running; load average {os.getloadavg()[0]:.1f}", flush=True)
    started = time.monotonic()
    try:
        return subprocess.call(command)
    finally:
        for hog in hogs:
            hog.terminate()
        for hog in hogs:
            hog.join(5)
        one, five, fifteen = os.getloadavg()
        took = time.monotonic() - started
        print(f"under_load: {took:.0f} s; load average 1/5/15 min {one:.1f}/{five:.1f}/{fifteen:.1f}")


if __name__ == "__main__":
    sys.exit(main())
