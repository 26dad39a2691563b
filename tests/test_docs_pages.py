"""Every code block in README.md and docs/ runs: Python blocks in order, `symtape` commands too."""

from __future__ import annotations

import pathlib
import re
import shlex
import subprocess

import pytest
from helpers import run_symtape

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def _blocks(page: pathlib.Path, language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(page.read_text()) if lang == language]


def _symtape(command: str, cwd) -> subprocess.CompletedProcess:
    words = shlex.split(command, comments=True)
    assert words[0] == "symtape", command
    return run_symtape(*words[1:], cwd=cwd)


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_code_block_is_one_the_tests_run(page):
    """python, bash and text blocks run (above and below); `py` is TensorFlow, shown beside."""
    text = page.read_text()
    assert text.count("```") == 2 * len(BLOCK.findall(text)), f"{page.name}: a block with no language"
    for language, body in BLOCK.findall(text):
        assert language in ("python", "bash", "text", "py"), (page.name, language, body)
        if language == "py":
            assert "tf." in body and "st." not in body, body


# `print(...)  # -> shown` in a page: the line printed must be `shown` (`...` matches anything)
SHOWN = re.compile(r"^(\s*)print\((.*)\)\s*# -> (.*)$", re.M)


def _checked_prints(block: str) -> str:
    return SHOWN.sub(lambda m: f"{m[1]}_shows({m[3].rstrip()!r}, {m[2]})", block)


def _shows(expected: str, *values) -> None:
    printed = " ".join(map(str, values))
    print(printed)
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    assert re.fullmatch(pattern, printed, re.S), f"the page shows {expected!r}, it prints {printed!r}"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_python_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_{page.stem}", "_shows": _shows}
    for block in _blocks(page, "python"):
        exec(compile(_checked_prints(block), str(page), "exec"), namespace)  # our own docs


def test_shown_output_is_checked():
    namespace = {"_shows": _shows}
    exec(_checked_prints("print(1 + 1, 'a')  # -> 2 a"), namespace)
    exec(_checked_prints("print([0.5])  # -> [0...]"), namespace)
    with pytest.raises(AssertionError, match="the page shows '3', it prints '2'"):
        exec(_checked_prints("print(2)  # -> 3"), namespace)


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
    printed = capsys.readouterr().out
    # finite differences are good to ~1e-10: their last printed digit (and so the column's
    # width) may differ between machines; everything else must be as shown
    assert _words(printed) == _words(shown)
    for ours, theirs in zip(_numbers(printed), _numbers(shown)):
        assert ours == pytest.approx(theirs, rel=1e-9)


NUMBER = re.compile(r"(?<![\w\[])-?\d+\.\d+(?:e[-+]\d+)?")


def _words(text: str) -> list[str]:
    return NUMBER.sub("#", text).split()


def _numbers(text: str) -> list[float]:
    return [float(n) for n in NUMBER.findall(text)]
