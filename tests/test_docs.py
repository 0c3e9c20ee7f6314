"""The README tells the truth: generated sections are current, the two commands exist."""

import os
import re
from pathlib import Path

import inventory
from inventory import docs, schema

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_generated_sections_are_current() -> None:
    assert docs.update(README) == README, "run: python -m inventory.docs README.md"


def test_every_table_and_column_is_documented() -> None:
    for table in schema.TABLES:
        assert f"#### `{table.name}`" in README
        for column in table.columns:
            assert f"| `{column.name}` |" in README


def test_the_two_setup_commands_exist_and_ci_runs_the_test_one() -> None:
    block = re.search(r"## Try it.*?```sh\n(.*?)```", README, re.S)
    assert block is not None
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["./scripts/lab", "./scripts/test"]
    for command in commands:
        assert os.access(ROOT / command, os.X_OK)
    assert "scripts/test" in (ROOT / ".ci/run").read_text()


def test_public_api_is_listed() -> None:
    public = {name for name in vars(inventory) if not name.startswith("_")
              and not isinstance(getattr(inventory, name), type(inventory))}
    assert public == set(inventory.__all__)
