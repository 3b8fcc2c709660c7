"""Every code block of the README and of the docs pages is run here, or is a copy of an example file.

The README's quick start is run the way it tells a user to: its DAG-and-test file is saved under the
name the README gives, in a folder that is the DAGs folder, with a migrated metadata database, and the
README's own ``pytest`` command runs it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.operators.dagtest_helpers import RESULT_KEYS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
#: the pages of the Sphinx tree (MyST Markdown); their directives (```{literalinclude} ...) are not code blocks
DOCS = {path.relative_to(ROOT).as_posix(): path.read_text() for path in sorted((ROOT / "docs").glob("*.md"))}
BLOCK = re.compile(r"(?:<!-- example: (?P<source>\S+) -->\n)?```(?P<lang>\w+)\n(?P<code>.*?)```", re.S)


def _blocks_of(text: str) -> list[tuple[str, str, str | None]]:
    return [(m["lang"], m["code"], m["source"]) for m in BLOCK.finditer(text)]


README_BLOCKS = _blocks_of(README)
BLOCKS = README_BLOCKS + [block for text in DOCS.values() for block in _blocks_of(text)]


def blocks(lang: str) -> list[tuple[str, str | None]]:
    return [(code, source) for kind, code, source in BLOCKS if kind == lang]


def test_readme_has_only_known_kinds_of_blocks() -> None:
    assert {kind for kind, _, _ in README_BLOCKS} <= {"python", "bash", "json"}
    assert [kind for kind, _, _ in README_BLOCKS].count("python") >= 1
    assert len(blocks("python")) >= 3


def _quick_start() -> tuple[str, str]:
    """The README's quick-start file name and the ``pytest`` command that runs it."""
    (command,) = [c for code, _ in blocks("bash") for c in _commands(code) if c.startswith("pytest ")]
    assert command.split()[1:3] == ["-p", PLUGIN], command
    return command.split()[-1], command


PLUGIN = "airflow_provider_aireiter.testing.emulator.pytest_plugin"


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_blocks_run_or_copy_an_example(index: int, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    code, source = blocks("python")[index]
    if source:

        def flat(text: str) -> str:
            return "\n".join(line.strip() for line in text.strip().splitlines())

        assert flat(code) in flat((ROOT / source).read_text()), f"README block is not a copy of {source}"
        return
    if "dag.test(" in code:  # the quick start: a DAG and its test in one file, in the DAGs folder
        assert "def test_" in code
        request.getfixturevalue("airflow_db")  # the README's "airflow db migrate" (this run's AIRFLOW_HOME)
        name, command = _quick_start()
        (tmp_path / name).write_text(code)
        done = subprocess.run(
            # The README's export: the folder the file is saved in is the DAGs folder.
            [sys.executable, "-m", *shlex.split(command), "-q", "-p", "no:cacheprovider"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path)},
            timeout=600,
        )
        assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]
        return
    if "def test_" in code:  # a test for the user's own suite: run it with pytest, as they would
        (tmp_path / "test_from_readme.py").write_text(code)
        done = subprocess.run(
            # The plugin is opt-in: enabled the way the README says.
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", PLUGIN, str(tmp_path)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=300,
        )
        assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]
        return
    exec(compile(code, f"README block {index}", "exec"), {"__name__": "readme"})  # noqa: S102  # our own README


def test_json_result_block_has_the_result_keys() -> None:
    (code, _), *_ = blocks("json")
    keys = set(json.loads(code))
    assert keys == RESULT_KEYS


def _check_connection(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_aireiter.hooks.aireiter import AireiterHook

    monkeypatch.setenv("AIRFLOW_CONN_AIREITER_DEFAULT", value)
    settings = AireiterHook().settings
    assert settings.api_key and settings.base_url.startswith(("http://", "https://"))


def _check_emulator_command(args: list[str]) -> None:
    args = [("0" if previous == "--port" else a) for previous, a in zip(["", *args], args, strict=False)]
    process = subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy()
    )
    try:
        deadline = time.time() + 60
        seen = ""
        assert process.stdout is not None
        while time.time() < deadline and "AIRFLOW_CONN_AIREITER_DEFAULT" not in seen:
            seen += process.stdout.readline()
        assert "http://127.0.0.1:" in seen and "AIRFLOW_CONN_AIREITER_DEFAULT" in seen
    finally:
        process.terminate()
        process.wait(20)


def test_bash_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    makefile = (ROOT / "Makefile").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    for code, _ in blocks("bash"):
        for command in _commands(code):
            if command.startswith("make "):
                assert re.search(rf"^{command.split()[1]}:", makefile, re.M), command
            elif command.startswith("pip install "):
                assert f'name = "{command.split()[2]}"' in pyproject
            elif command.startswith("export AIRFLOW_CONN_AIREITER_DEFAULT="):
                _check_connection(shlex.split(command.removeprefix("export "))[0].split("=", 1)[1], monkeypatch)
            elif command.startswith("export AIRFLOW__CORE__DAGS_FOLDER="):
                # the quick start's folder, which the python-block test makes the DAGs folder
                assert shlex.split(command.removeprefix("export "))[0] == "AIRFLOW__CORE__DAGS_FOLDER=$PWD"
            elif shlex.split(command, comments=True) == ["airflow", "db", "migrate"]:
                continue  # for the quick start, the airflow_db fixture runs it (python -m airflow db migrate)
            elif command.startswith("pytest "):
                assert command == _quick_start()[1]  # run by test_python_blocks_run_or_copy_an_example
            elif command.startswith(("# ", "or ")):
                continue
            elif command.startswith("python -m airflow_provider_aireiter.testing.emulator"):
                _check_emulator_command(shlex.split(command)[1:])
            else:
                raise AssertionError(f"README command not covered by a test: {command}")


def _commands(code: str) -> list[str]:
    """Shell commands of a block: lines joined while a quote is open, comments dropped."""
    commands: list[str] = []
    pending = ""
    for line in code.splitlines():
        pending = f"{pending}\n{line}" if pending else line
        try:
            words = shlex.split(pending, comments=True)
        except ValueError:
            continue  # an open quote: the command goes on on the next line
        if words:
            commands.append(pending.strip())
        pending = ""
    assert not pending, f"unterminated command in README: {pending}"
    return commands
