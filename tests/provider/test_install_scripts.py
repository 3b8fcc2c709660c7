"""scripts/apt_install.sh, the one apt-get path of ensure_postgres.sh and ensure_chromium.sh.

A stand-in ``apt-get`` on ``PATH`` records its arguments (or fails), so the helper's own logic runs in
a real bash without touching the machine's packages.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def run_helper(tmp_path: Path, apt_body: str | None, *packages: str) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "mktemp", "tail", "rm", "id", "env", "cat", "dirname", "grep"):
        target = subprocess.run(["bash", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        (bin_dir / tool).symlink_to(target)
    if apt_body is not None:
        fake = bin_dir / "apt-get"
        fake.write_text(f'#!{bin_dir / "bash"}\necho "apt-get $*" >> {tmp_path / "calls"}\n{apt_body}\n')
        fake.chmod(0o755)
        dpkg = bin_dir / "dpkg"  # a stand-in too: the helper may finish an interrupted install
        dpkg.write_text(f'#!{bin_dir / "bash"}\necho "dpkg $*" >> {tmp_path / "calls"}\n')
        dpkg.chmod(0o755)
    script = (
        f"set -euo pipefail; source {SCRIPTS / 'apt_install.sh'}; apt_install probe {' '.join(packages)}; echo after"
    )
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    return subprocess.run([str(bin_dir / "bash"), "-c", script], capture_output=True, text=True, env=env, timeout=60)


AS_ROOT = pytest.mark.skipif(
    os.geteuid() != 0, reason="as another user the helper goes through sudo, which would install for real"
)


def _calls(tmp_path: Path, words: int | None = None) -> list[str]:
    """The command lines the fake apt-get and dpkg were called with, or their first ``words`` words."""
    lines = (tmp_path / "calls").read_text().splitlines()
    return lines if words is None else [" ".join(line.split()[:words]) for line in lines]


@AS_ROOT
def test_installs_quietly_with_update_first(tmp_path: Path) -> None:
    done = run_helper(tmp_path, "echo lots of apt output", "postgresql", "chromium")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "after\n"  # apt's own output is not shown when it works
    calls = _calls(tmp_path)
    assert calls[0] == "apt-get update -q"
    assert calls[1].startswith("apt-get install -y -q --no-install-recommends") and calls[1].endswith(
        "postgresql chromium"
    )
    assert "installing postgresql chromium" in done.stderr
    assert not list(tmp_path.glob("probe-apt.*")), "the log file is removed"


@AS_ROOT
def test_a_failing_apt_stops_the_script_and_shows_its_output(tmp_path: Path) -> None:
    # the update works, the install fails: the script stops there, with apt's last lines
    failing_install = 'if [ "$1" = install ]; then echo "E: Unable to locate package ${!#}"; exit 100; fi'
    done = run_helper(tmp_path, failing_install, "no-such-package")
    assert done.returncode == 1
    assert "after" not in done.stdout
    assert _calls(tmp_path, 2) == ["apt-get update", "apt-get install"]
    assert "E: Unable to locate package no-such-package" in done.stderr
    assert "probe: apt-get failed, last lines of its output:" in done.stderr
    assert not list(tmp_path.glob("probe-apt.*"))


def test_no_apt_get_names_what_is_missing(tmp_path: Path) -> None:
    done = run_helper(tmp_path, None, "chromium", "chromium-driver")
    assert done.returncode == 1
    assert "probe: chromium chromium-driver missing and apt-get is unavailable" in done.stderr


@AS_ROOT
def test_an_install_interrupted_earlier_is_finished_then_retried_once(tmp_path: Path) -> None:
    # The first install meets dpkg's "interrupted" state (an earlier apt-get was killed half-way).
    first_install_fails = (
        'if [ "$1" = install ] && [ ! -e "$HOME/retried" ]; then : > "$HOME/retried"; '
        "echo \"E: dpkg was interrupted, you must manually run 'dpkg --configure -a' to correct the problem.\"; "
        "exit 100; fi"
    )
    done = run_helper(tmp_path, first_install_fails, "chromium")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "after\n"
    calls = _calls(tmp_path, 2)
    assert calls == ["apt-get update", "apt-get install", "dpkg --configure", "apt-get install"]


@AS_ROOT
def test_another_failure_is_not_retried(tmp_path: Path) -> None:
    always_fails = 'if [ "$1" = install ]; then echo "E: Unable to fetch some archives"; exit 100; fi'
    done = run_helper(tmp_path, always_fails, "chromium")
    assert done.returncode == 1
    assert _calls(tmp_path, 2) == ["apt-get update", "apt-get install"]
