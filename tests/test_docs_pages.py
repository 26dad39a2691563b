"""Every code block in README.md and docs/ runs: Python blocks in order, `symtape` commands too."""

from __future__ import annotations

import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def _blocks(page: pathlib.Path, language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(page.read_text()) if lang == language]


def _symtape(command: str, cwd) -> subprocess.CompletedProcess:
    words = shlex.split(command, comments=True)
    assert words[0] == "symtape", command
    return subprocess.run([sys.executable, "-m", "symtape", *words[1:]], capture_output=True,
                          text=True, timeout=120, check=False, cwd=cwd,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8"})


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_python_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for block in _blocks(page, "python"):
        exec(compile(block, str(page), "exec"), namespace)  # our own documentation


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_shell_commands_run(page, tmp_path):
    for block in _blocks(page, "bash"):
        for line in block.splitlines():
            if not line.startswith("symtape "):  # set-up commands (pip install) are CI's
                continue
            status = re.search(r"# exit status (\d+)", line)
            result = _symtape(line, tmp_path)
            assert result.returncode == (int(status.group(1)) if status else 0), (line, result)
            assert "Traceback" not in result.stderr


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_shown_sessions_match(page, tmp_path):
    """``$ symtape ...`` in a text block is followed by exactly what it prints."""
    for block in _blocks(page, "text"):
        if not block.startswith("$ "):
            continue
        command, *shown = block.rstrip("\n").split("\n")
        result = _symtape(command[2:], tmp_path)
        assert (result.stdout + result.stderr).rstrip("\n").split("\n") == shown


def test_the_logistic_example_output_is_what_the_page_shows(tmp_path, monkeypatch, capsys):
    page = DOCS / "cross-validation.md"
    monkeypatch.chdir(tmp_path)
    exec(compile(_blocks(page, "python")[0], str(page), "exec"), {})
    shown = [b for b in _blocks(page, "text") if b.startswith("check_grads: 3 of 3")][0]
    assert capsys.readouterr().out == shown
