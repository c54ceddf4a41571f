"""Issue 9: the README matches the program — every `estatedesk …` command it shows runs
(`--help` at least), and the role table it prints is the services' own."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from estatedesk.cli import build_parser, lifecycle_diagram, role_table

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def commands_in_readme() -> list[tuple[str, ...]]:
    """The subcommand words of every `estatedesk …` the README shows (up to the first
    option or placeholder)."""
    found = set()
    for line in re.findall(r"estatedesk ([^`\n|]+)", README):
        words = []
        for word in line.split():
            if not re.fullmatch(r"[a-z][a-z-]*", word):
                break
            words.append(word)
        if words:
            found.add(tuple(words))
    return sorted(found)


def test_the_readme_shows_commands():
    assert ("up",) in commands_in_readme() and ("token",) in commands_in_readme()


@pytest.mark.parametrize("words", commands_in_readme(), ids=" ".join)
def test_every_command_in_the_readme_exists(words):
    parser = build_parser()
    with pytest.raises(SystemExit) as done:
        parser.parse_args([*words, "--help"])
    assert done.value.code == 0, words


def test_the_installed_command_answers_help():
    binary = Path(sys.executable).parent / "estatedesk"
    run = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "token" in run.stdout


def test_the_readme_carries_the_current_role_table():
    assert role_table() in README, "run `estatedesk roles` and paste its table into the README"


def test_the_readme_carries_the_ticket_lifecycle_generated_from_its_table():
    assert lifecycle_diagram() in README, "run `estatedesk lifecycle` and paste its diagram into the README"


def test_every_picture_in_the_readme_is_committed():
    """The "first day" section shows one screenshot per role; each must exist."""
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert len(pictures) >= 8
    root = Path(__file__).resolve().parents[2]
    assert [p for p in pictures if not (root / p).is_file()] == []
