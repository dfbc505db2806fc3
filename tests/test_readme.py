"""The README's install steps work for someone starting from nothing (the Python it needs, a clone, no install from a
package index vitseg is not on), and its examples use the current option names."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end >= 0 else None]


def test_install_names_the_python_it_needs_and_starts_from_a_clone():
    needed = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]  # ">=3.11"
    install = _section("Install")
    assert f"Python {needed.replace('>=', '>= ')}" in install
    clone = install.index("git clone ")
    assert clone < install.index("pip install") and "cd vitseg" in install[clone:]


def test_no_install_from_a_package_index():
    for match in re.finditer(r"pip install ([^\n#&]*)", README):
        words = match.group(1).replace('"', "'").split()
        assert not any(w.strip("'").startswith("vitseg") for w in words), match.group(0)


def test_quick_start_is_two_command_lines():
    block = _section("Quick start").split("```bash\n", 1)[1].split("```", 1)[0]
    assert len(block.strip().splitlines()) == 2


def test_examples_use_the_current_option_names():
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    commands = [ln for block in blocks for ln in block.splitlines() if "vitseg" in ln]
    assert len(commands) > 30
    old = [ln for ln in commands if re.search(r"(vitseg|vitseg_cli) eval (?!-)[^`\s]", ln)
           or re.search(r"visualize .*--masks ", ln) or re.search(r"export .*--(height|width) ", ln)]
    assert old == []
