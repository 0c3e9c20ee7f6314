"""Names are data: a name chosen by a tenant reaches the operator's terminal as the characters it is.

A recorded pool whose pool, host, network and VM names carry Rich markup, emoji codes, format strings,
terminal escapes (an ESC that recolours, an OSC that writes the clipboard), a bidirectional override and a
newline is stored, then printed by every command that prints names. None may fail, interpret the name, or
let a control character through.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from fixtures.cases import HERE
from tests.conftest import TOOL

HOSTILE = ("[/] [link=http://evil.example]ok[/link] :thumbs_up: {0} %s \x1b[31mred\x1b]52;c;cHduZWQ=\x07 "
           "\u202eevil\nerror: forged")
SHOWN = "[link=http://evil.example]ok[/link] :thumbs_up: {0} %s \\x1b[31mred\\x1b]52;c;cHduZWQ=\\x07 \\u202eevil\\x0aerror: forged"


def hostile_recording(folder: Path, *, drop_vm: bool = False) -> Path:
    """The recorded XCP-ng 8.3 pool with names a tenant (or a broken server) could send."""
    data = json.loads((HERE / "xenserver" / "xcp-ng-8.3-pool" / "recording.json").read_text())
    data["target"]["name"] = "pool"
    (answer,) = data["answers"].values()
    records = answer["records"]
    next(iter(records["pool"].values()))["name_label"] = "pool " + HOSTILE
    host = next(iter(records["host"].values()))
    host["hostname"] = host["name_label"] = "host " + HOSTILE
    next(iter(records["network"].values()))["name_label"] = "net " + HOSTILE
    vms = [v for v in records["VM"].values() if not (v["is_a_template"] or v["is_a_snapshot"]
                                                      or v["is_control_domain"])]
    vms[0]["name_label"] = "vm " + HOSTILE
    if drop_vm:
        del records["VM"][next(ref for ref, v in records["VM"].items() if v is vms[1])]
    folder.mkdir()
    (folder / "000-pool.json").write_text(json.dumps(data))
    return folder


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(TOOL), *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("names")
    database = folder / "names.db"
    for scan, drop in ((1, False), (2, True)):
        imported = run("import", "recorded", str(hostile_recording(folder / f"rec{scan}", drop_vm=drop)),
                       "--db", str(database))
        assert imported.returncode == 0, imported.stdout + imported.stderr
        assert "\x1b" not in imported.stdout and "pool" in imported.stdout
    # scan 2 checked (scan 1 not): `diff` shows its findings, some naming the VM, whichever test runs first
    checked = run("check", "--cloudstack-version", "4.20", "--fail-on", "never", "--db", str(database))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return database


@pytest.mark.parametrize("command", [
    ["show"], ["check", "--cloudstack-version", "4.20", "--fail-on", "never"], ["diff"], ["history"],
    ["reconcile"], ["export", "--table", "vms", "--format", "csv"], ["check", "--format", "json",
                                                                      "--cloudstack-version", "4.20"],
], ids=lambda c: " ".join(c[:3]))
def test_every_command_prints_names_literally(db: Path, command: list[str]) -> None:
    done = run(*command, "--db", str(db))
    assert done.returncode in (0, 1, 2), done.stdout + done.stderr  # never 4: nothing crashed on a name
    printed = done.stdout + done.stderr
    if command[0] == "export":  # data for a program, piped: the name as it is, quoted as CSV quotes it
        assert "vm " + HOSTILE.replace('"', '""') in done.stdout
        return
    assert "\x1b" not in printed and "\x07" not in printed and "\u202e" not in printed
    assert "\nerror: forged" not in printed  # a name never starts a line of its own
    if command[0] in ("show", "check", "diff"):
        assert SHOWN in printed.replace("\n", "") or "[link=http://evil.example]ok[/link]" in printed, printed[:2000]


def test_the_table_shows_the_name_whole_and_escaped(db: Path) -> None:
    shown = run("show", "--db", str(db)).stdout
    assert "pool [/] [link=http://evil.example]ok[/link] :thumbs_up: {0} %s" in shown
    assert "\\x1b[31mred" in shown and "\\u202eevil" in shown


def _on_a_terminal(*args: str) -> str:
    """What a command writes to a pseudo-terminal, as the terminal receives it (its line discipline's CRLF)."""
    import os
    import pty
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(str(TOOL), [str(TOOL), *args])
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


def test_an_export_to_a_terminal_shows_control_characters_escaped(db: Path) -> None:
    """On a terminal (a pseudo-terminal here) an export escapes what would drive the terminal, like ls does."""
    seen = _on_a_terminal("export", "--db", str(db), "--table", "vms", "--format", "csv")
    assert "\\x1b[31mred" in seen and "\x1b" not in seen and "i-" in seen


def test_csv_line_ends_on_a_terminal_are_line_ends_not_escapes(db: Path) -> None:
    """CSV ends its lines with CRLF: the CR is the line end, not a character of a name to show as ``\\x0d``."""
    seen = _on_a_terminal("export", "--db", str(db), "--table", "vms", "--format", "csv", "--columns", "name")
    lines = seen.splitlines()
    assert lines[0] == "name" and len(lines) > 1 and "\\x0d" not in seen, seen[:500]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_log_line_shows_format_characters_rather_than_obey_them(tmp_path: Path, fmt: str) -> None:
    """A name with a right-to-left override, a zero-width space, a C1 control, a line separator or a tag character
    (beyond the BMP) must not turn a log line around when it is read in a terminal; a JSON line still decodes to the
    very name."""
    from inventory.logs import configure, event
    name = "gnp\u202eexe\u200b\x85\u2028\U000e0001.txt"
    configure(tmp_path / "log", fmt)
    try:
        event("target read", target=name)
    finally:
        configure(None)
    line = (tmp_path / "log").read_text(encoding="utf-8").strip()
    assert line.isprintable() and "\\u202e" in line and "\\udb40\\udc01" in line, line
    if fmt == "json":
        assert json.loads(line)["target"] == name
