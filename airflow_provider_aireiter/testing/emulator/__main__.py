"""Command line: ``python -m airflow_provider_aireiter.testing.emulator [options]``."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from .emulator import CONN_ENV_VAR, DEFAULT_API_KEY, Emulator
from .state import DUPLICATE_POLICIES


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the CLI."""
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_aireiter.testing.emulator",
        description="Run a local emulator of the AIReiter API (no credits spent).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765, 0 = free port)")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY, help="accepted API key")
    parser.add_argument("--speed", type=float, default=1.0, help="clock speed factor (60: a 60 s task takes 1 s)")
    parser.add_argument("--credits", type=int, default=10_000, help="starting balance")
    parser.add_argument(
        "--duplicate-policy",
        choices=DUPLICATE_POLICIES,
        default="reject",
        help="what a reused out_task_id does",
    )
    parser.add_argument("--hide-task-id", action="store_true", help='answer task_id "" on submit')
    parser.add_argument("--seed", type=int, default=None, help="seed for generated task ids")
    parser.add_argument(
        "--faults",
        default=None,
        help='initial faults as JSON, e.g. \'{"query": {"kind": "http_503", "rate": 0.1}}\'',
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return parser


def banner(emu: Emulator) -> str:
    """Text printed on start: base URL, key and Airflow connection strings."""
    return "\n".join(
        [
            f"AIReiter emulator listening on {emu.base_url}",
            f"API key: {emu.api_key}",
            f"Speed: {emu.speed}x",
            "Point Airflow at it with (JSON form):",
            f"  export {CONN_ENV_VAR}={shlex.quote(emu.conn_json)}",
            "or (URI form):",
            f"  export {CONN_ENV_VAR}={shlex.quote(emu.conn_uri)}",
            "Press Ctrl-C to stop.",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator until Ctrl-C or SIGTERM."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    faults = json.loads(args.faults) if args.faults else None
    options = ("api_key", "speed", "host", "port", "credits", "duplicate_policy", "seed", "hide_task_id")
    emu = Emulator(faults=faults, **{name: getattr(args, name) for name in options})
    done = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    emu.start()
    print(banner(emu), flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        emu.stop()
    print("AIReiter emulator stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
