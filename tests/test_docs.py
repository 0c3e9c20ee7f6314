"""The documentation tells the truth: generated sections are current, the two commands exist, links stay
inside the repository, and the README's example config is a config cs-inventory accepts."""

import os
import re
from pathlib import Path

import inventory
from inventory import docs, schema

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
PAGES = {path: path.read_text() for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]}


def test_generated_sections_are_current() -> None:
    for section, page in docs.SECTIONS.items():
        text = (ROOT / "docs" / page).read_text()
        assert docs.update(text, section) == text, "run: python -m inventory.docs"


def test_every_table_and_column_is_documented() -> None:
    database = (ROOT / "docs" / "database.md").read_text()
    for table in schema.TABLES:
        assert f"#### `{table.name}`" in database
        for column in table.columns:
            assert f"| `{column.name}` |" in database


def test_the_two_setup_commands_exist_and_ci_runs_the_test_one() -> None:
    block = re.search(r"## Try it.*?```sh\n(.*?)```", README, re.S)
    assert block is not None
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["./scripts/lab", "./scripts/test"]
    for command in commands:
        assert os.access(ROOT / command, os.X_OK)
    assert "scripts/test" in (ROOT / ".ci/run").read_text()


def test_the_readme_stays_short_and_links_every_page() -> None:
    assert len(README.splitlines()) < 80
    for page in (ROOT / "docs").glob("*.md"):
        assert f"(docs/{page.name}" in README, f"README does not link {page.name}"


def test_no_link_points_outside_the_repository() -> None:
    for path, text in PAGES.items():
        outside = re.findall(r"\]\((?:https?:|//)[^)]*\)|<https?://[^>]*>", text)
        assert not outside, f"{path.name}: {outside}"
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            assert (path.parent / target).resolve().exists(), f"{path.name} links {target}, which is not there"


def test_the_readme_example_is_a_config_cs_inventory_accepts(tmp_path: Path) -> None:
    block = re.search(r"```toml\n(# cs-inventory.toml\n.*?)```", README, re.S)
    assert block is not None
    (tmp_path / "cs-inventory.toml").write_text(block.group(1))
    config = inventory.load_config(tmp_path / "cs-inventory.toml")
    assert [t.name for t in config.targets] == ["zone1-kvm", "pool1"] and config.cloudstack_version == "4.20"


def test_public_api_is_listed() -> None:
    public = {name for name in vars(inventory) if not name.startswith("_")
              and not isinstance(getattr(inventory, name), type(inventory))}
    assert public == set(inventory.__all__)


def test_every_setting_the_checks_read_is_in_the_configuration_page() -> None:
    from inventory import settings
    page = (ROOT / "docs" / "configuration.md").read_text()
    for name, default in settings.DEFAULTS.items():
        assert f"| `{name}` | `{default}` |" in page, name


def test_the_documented_mail_recipes_send_the_page_in_base64() -> None:
    """A mail line may not pass 998 characters (RFC 5322) and the report's page has longer ones (a long VM name):
    sent raw, an MTA folds them, inside a tag or an entity. Base64 lines are 76."""
    for page in ("usage.md", "reports.md"):
        text = (ROOT / "docs" / page).read_text()
        recipes = [line for line in text.splitlines() if "Content-Type: text/html" in line]
        assert recipes and all("Content-Transfer-Encoding: base64" in line for line in recipes), page
        assert "cat /srv/reports/audit.html" not in text and 'cat "$report"' not in text, page
