"""The README keeps its promises: the two first commands, and a preset reference equal to the schema's."""

from __future__ import annotations

import re

from rlhf_train.config.reference import preset_reference_markdown
from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def test_readme_starts_with_the_two_commands():
    first_block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ["make run", "make test"]
    assert README.index("```bash") < README.index("## ")


def test_readme_reference_is_generated_from_the_schema():
    section = README.split("<!-- preset-reference:start -->\n")[1].split("<!-- preset-reference:end -->")[0]
    assert section == preset_reference_markdown() + "\n"


def test_makefile_pins_the_cpu_torch():
    makefile = (REPO / "Makefile").read_text()
    assert "torch==2.13.0" in makefile
    assert re.search(r"^run: setup\n\t\$\(BIN\)/rlhf-train \$\(PRESET\)$", makefile, re.M)
    assert re.search(r"^test: setup\n\t\$\(BIN\)/python -m pytest tests$", makefile, re.M)


def test_readme_broken_preset_example_is_what_check_prints(tmp_path, monkeypatch, capsys):
    from rlhf_train.cli import main

    text = README.split("$ cat broken.toml\n")[1]
    toml_text, rest = text.split("$ rlhf-train check broken.toml\n")
    shown = rest.split("\n\n")[0]
    (tmp_path / "broken.toml").write_text(toml_text)
    monkeypatch.chdir(tmp_path)
    assert main(["check", "broken.toml"]) == 2
    assert capsys.readouterr().out.rstrip("\n") == shown
