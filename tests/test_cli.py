"""The installed `cs-inventory` command, end to end, as cron or an operator runs it."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from fixtures.sshd import SshServer
from fixtures.testdriver import write_cluster
from tests.conftest import TOOL, run_tool

pytestmark = pytest.mark.heavy


def write_config(folder: Path, sshd: SshServer, extra: str = "") -> Path:
    hosts = write_cluster(folder / "td", hosts=4, domains_per_host=10)
    config = folder / "cs-inventory.toml"
    config.write_text(f"""
[database]
path = "inv.db"
[cloudstack]
version = "4.20"
[[kvm]]
name = "real"
cluster = "c1"
hosts = ["127.0.0.1"]
ssh_port = {sshd.port}
ssh_key = "{sshd.client_key}"
known_hosts = "{sshd.known_hosts}"
[[kvm]]
name = "td"
cluster = "c2"
hosts = [{", ".join(f'"{h.name}"' for h in hosts)}]
uri = "test://{folder / 'td'}/{{host}}.xml"
ssh_facts = false
{extra}""")
    return config


def test_scan_show_export_round_trip(real_domains: Any, sshd: SshServer, tmp_path: Path) -> None:
    config = write_config(tmp_path, sshd)
    scan = run_tool("scan", "--config", str(config))
    # the real host has no cloudstack-agent: the checks find an error, and the exit code says so
    assert scan.returncode == 1, scan.stderr
    assert "scan 1: ok" in scan.stdout and "findings: 1 errors" in scan.stdout
    assert "real/127.0.0.1: ok" in scan.stderr  # plain progress lines when not on a terminal
    db = sqlite3.connect(tmp_path / "inv.db")
    assert db.execute("SELECT status FROM scans").fetchall() == [("ok",)]
    assert db.execute("SELECT COUNT(*) FROM latest_vms WHERE target = 'td'").fetchone() == (40,)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    show = run_tool("show", "--config", str(config), "--format", "json")
    summary = json.loads(show.stdout)
    assert summary["totals"]["hosts"] == 5
    td = next(t for t in summary["targets"] if t["name"] == "td")
    assert td["clusters"][0]["roles"]["ssvm"] == 1 and td["clusters"][0]["vms"] == 40
    table = run_tool("show", "--config", str(config))
    assert "c2" in table.stdout and "unmanaged" in table.stdout

    out = tmp_path / "vms.csv"
    export = run_tool("export", "--config", str(config), "--table", "vms", "--format", "csv", "--output", str(out))
    assert export.returncode == 0 and "wrote" in export.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == db.execute("SELECT COUNT(*) FROM vms").fetchone()[0]
    assert out.stat().st_mode & 0o077 == 0
    ndjson = run_tool("export", "--config", str(config), "--table", "hosts", "--format", "ndjson", "--scan", "1")
    assert len(ndjson.stdout.splitlines()) == 5


def test_a_failed_host_makes_the_scan_partial_with_exit_code_3(real_domains: Any, sshd: SshServer,
                                                               tmp_path: Path) -> None:
    config = write_config(tmp_path, sshd, extra=f"""
[[kvm]]
name = "down"
hosts = ["127.0.0.1"]
ssh_port = 1
ssh_key = "{sshd.client_key}"
known_hosts = "{sshd.known_hosts}"
connect_timeout = 2
""")
    scan = run_tool("scan", "--config", str(config))
    assert scan.returncode == 3, scan.stderr
    db = sqlite3.connect(tmp_path / "inv.db")
    assert db.execute("SELECT status FROM scans").fetchone() == ("partial",)
    status = dict(db.execute("SELECT name, status FROM targets").fetchall())
    assert status == {"real": "ok", "td": "ok", "down": "failed"}
    (error,) = db.execute("SELECT error FROM targets WHERE name = 'down'").fetchone()
    assert "connection refused" in error and "\n" not in error
    assert db.execute("SELECT COUNT(*) FROM vms WHERE target = 'td'").fetchone() == (40,)  # nothing lost
    # the failed target is still exportable around: the export carries the rest
    export = run_tool("export", "--config", str(config), "--table", "targets", "--format", "json")
    assert {t["name"]: t["status"] for t in json.loads(export.stdout)}["down"] == "failed"
    vms = run_tool("export", "--config", str(config), "--table", "vms", "--format", "json")
    assert vms.returncode == 0 and {v["target"] for v in json.loads(vms.stdout)} == {"real", "td"}


@pytest.mark.parametrize("content, expected", [
    ('[[kvm]]\nname = "x"\nhosts = ["h"]\nbogus = 1\n', "unknown key 'bogus'"),
    ('[[kvm]]\nname = "x"\n', "missing key 'hosts'"),
])
def test_bad_config_is_one_error_line_and_exit_2(tmp_path: Path, content: str, expected: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(content)
    result = run_tool("scan", "--config", str(config))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and expected in lines[0] and str(config) in lines[0]
    assert len(lines) <= 2 and "Traceback" not in result.stderr


def test_an_unknown_cloudstack_release_fails_before_scanning(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[database]\npath = "inv.db"\n[cloudstack]\nversion = "4.30"\n'
                      '[[kvm]]\nname = "x"\nhosts = ["h"]\nuri = "test:///default"\nssh_facts = false\n')
    result = run_tool("scan", "--config", str(config))
    assert result.returncode == 2 and "4.30 is not in cs-inventory's tables" in result.stderr
    assert not (tmp_path / "inv.db").exists()


def test_a_scan_whose_every_target_failed_says_so_rather_than_blame_the_release(tmp_path: Path) -> None:
    """The release comes from the config and is known: the checks were skipped because nothing was read."""
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\npath = "{tmp_path / "inv.db"}"\n[cloudstack]\nversion = "4.20"\n'
                      f'[[vmware]]\nname = "vc"\nhost = "127.0.0.1"\nport = {port}\nusername = "u"\n'
                      'password_env = "CSI_TEST_NOPE"\n')
    result = run_tool("scan", "--config", str(config), env={"CSI_TEST_NOPE": "x"})
    assert result.returncode == 3, result.stderr
    assert "read from its API" not in result.stdout and "not in cs-inventory's tables" not in result.stdout
    assert "checks skipped: every target failed: nothing to check" in result.stdout


@pytest.mark.parametrize("asked, reported, status, expected", [
    ("4.19", "4.20.1.0", "partial", ("4.19", None)),
    (None, "4.20.1.0", "ok", ("4.20.1.0", None)),
    (None, "4.99.0.0", "ok", (None, "CloudStack 4.99.0.0 (read from its API) is not in cs-inventory's tables; "
                                    "set [cloudstack] version")),
    (None, None, "ok", (None, "no [cloudstack] version in the config (or --cloudstack-version)")),
    ("4.20", None, "failed", (None, "every target failed: nothing to check")),
])
def test_why_a_scan_was_not_checked(asked: str | None, reported: str | None, status: str,
                                    expected: tuple[str | None, str | None]) -> None:
    from inventory.checks import CheckSettings
    from inventory.scan import _checked_release
    assert _checked_release(CheckSettings(asked), reported, status) == expected
    assert _checked_release(None, reported, status) == (None, None)  # not asked for: nothing to say


@pytest.mark.parametrize("name, value, said", [
    ("pool.storage.capacity.disablethreshold", '"85%"', "'85%' is not a number"),
    ("storage.overprovisioning.factor", '"two"', "'two' is not a number"),
    ("vmware.additional.vnc.portrange.start", '"x"', "'x' is not a whole number"),
    ("vmware.additional.vnc.portrange.size", "10.5", "'10.5' is not a whole number"),
    ("control.cidr", '"169.254.0.0/33"', "'169.254.0.0/33' is not a network such as 169.254.0.0/16"),
    # CloudStack's own updateConfiguration refuses these (ConfigurationManagerImpl.validateConfigurationValue)
    ("pool.storage.capacity.disablethreshold", "85", "'85' is not between 0 and 1 (0.85 is 85 %)"),
    ("pool.storage.allocated.capacity.disablethreshold", "-0.1", "'-0.1' is not between 0 and 1 (0.85 is 85 %)"),
    ("storage.overprovisioning.factor", "0", "'0' is not more than 0"),
])
def test_a_setting_the_checks_cannot_read_is_a_config_error_before_scanning(tmp_path: Path, name: str, value: str,
                                                                           said: str) -> None:
    """It used to end in an internal error (exit 4) after the whole scan had been collected and stored."""
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\npath = "{tmp_path / "inv.db"}"\n[cloudstack]\nversion = "4.20"\n'
                      f'[cloudstack.settings]\n"{name}" = {value}\n'
                      '[[kvm]]\nname = "x"\nhosts = ["h"]\nuri = "test:///default"\nssh_facts = false\n')
    result = run_tool("scan", "--config", str(config))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"error: {config}: [cloudstack.settings] {name}: {said}"), result.stderr
    assert len(result.stderr.splitlines()) == 2 and not (tmp_path / "inv.db").exists()


def test_a_setting_cs_inventory_does_not_read_is_a_warning(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\npath = "{tmp_path / "inv.db"}"\n[cloudstack]\nversion = "4.20"\n'
                      '[cloudstack.settings]\n"pool.storage.capacity.disablethresold" = 0.9\n'
                      '[[kvm]]\nname = "x"\nhosts = ["h"]\nuri = "test:///default"\nssh_facts = false\n')
    result = run_tool("scan", "--config", str(config))
    assert result.returncode in (0, 1), result.stderr
    assert ("warning: [cloudstack.settings] pool.storage.capacity.disablethresold is not a setting the checks "
            "read; it is ignored") in result.stderr


@pytest.mark.parametrize("command", [
    ["export", "--table", "vms"], ["export", "--table", "vms", "--format", "json"], ["diff", "--format", "csv"],
    ["show"], ["history"],
])
def test_a_reader_that_went_away_ends_the_command_quietly(tmp_path: Path, command: list[str]) -> None:
    """`cs-inventory export | head`: once the reader is gone there is no one to tell; exit 141, as a Unix tool
    that SIGPIPE ends does, and no 'internal error' or traceback."""
    from fixtures.cases import HERE
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "000-pool.json").write_bytes((HERE / "xenserver" / "xcp-ng-8.3-pool" / "recording.json")
                                                     .read_bytes())
    for _ in range(2):
        run_tool("import", "recorded", str(tmp_path / "rec"), "--db", str(tmp_path / "x.db"))
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line
    try:
        done = subprocess.run([str(TOOL), *command, "--db", str(tmp_path / "x.db")], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert done.returncode == 141 and done.stderr == "", done.stderr


def test_check_of_some_rules_stores_nothing_and_one_of_another_release_says_so_in_the_scan(tmp_path: Path) -> None:
    """The stored findings are the scan's record (history, diff, the report, metrics): a look at one rule must not
    replace them, and findings of another release must not sit under the scan's old one."""
    from fixtures.cases import HERE
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "000-pool.json").write_bytes((HERE / "xenserver" / "xcp-ng-8.3-pool" / "recording.json")
                                                     .read_bytes())
    db = str(tmp_path / "x.db")
    run_tool("import", "recorded", str(tmp_path / "rec"), "--db", db)

    def stored() -> tuple[int, str]:
        findings = json.loads(run_tool("export", "--db", db, "--table", "findings", "--format", "json").stdout)
        scans = json.loads(run_tool("export", "--db", db, "--table", "scans", "--format", "json").stdout)
        return len(findings), scans[0]["cloudstack_version"]

    assert run_tool("check", "--db", db, "--cloudstack-version", "4.20", "--fail-on", "never").returncode == 0
    everything = stored()
    assert everything[0] >= 1 and everything[1] == "4.20", everything
    some = run_tool("check", "--db", db, "--cloudstack-version", "4.20", "--rule", "duplicate-mac",  # none here
                    "--fail-on", "never")
    assert some.returncode == 0 and "not stored" in some.stdout, some.stdout + some.stderr
    assert stored() == everything
    assert run_tool("check", "--db", db, "--cloudstack-version", "4.18", "--fail-on", "never").returncode == 0
    assert stored()[1] == "4.18"


@pytest.mark.parametrize("args, said", [
    (["check", "--fail-on", "warn"], "--fail-on 'warn'"), (["check", "--format", "csv"], "--format 'csv'"),
    (["history", "--format", "bogus"], "--format 'bogus'"), (["show", "--format", "csv"], "--format 'csv'"),
])
def test_a_bad_option_value_is_a_usage_error_before_anything_is_read_or_stored(tmp_path: Path, args: list[str],
                                                                                said: str) -> None:
    done = run_tool(*args, "--db", str(tmp_path / "none.db"))  # no database: the option is judged first
    assert done.returncode == 2 and said in done.stderr and "does not exist" not in done.stderr, done.stderr


@pytest.mark.parametrize("command", [["diff"], ["reconcile"], ["diff", "--format", "table"]])
def test_output_with_the_table_format_is_a_usage_error_not_a_file_silently_unwritten(tmp_path: Path,
                                                                                     command: list[str]) -> None:
    done = run_tool(*command, "--output", str(tmp_path / "out.txt"), "--db", str(tmp_path / "none.db"))
    assert done.returncode == 2 and "--output writes json" in done.stderr and "not the table" in done.stderr, done.stderr
    assert not (tmp_path / "out.txt").exists()


def test_diff_says_which_formats_it_takes(tmp_path: Path) -> None:
    done = run_tool("diff", "--format", "bogus", "--db", str(tmp_path / "none.db"))
    assert done.returncode == 2 and done.stderr.startswith("error: unknown --format 'bogus'"), done.stderr
    assert "table, json, csv or ndjson" in done.stderr


@pytest.mark.parametrize("deadline", ["-1", "0", "nan", "inf"])
def test_a_deadline_that_cannot_be_seconds_is_a_usage_error(tmp_path: Path, deadline: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\npath = "{tmp_path / "inv.db"}"\n'
                      '[[kvm]]\nname = "x"\nhosts = ["h"]\nuri = "test:///default"\nssh_facts = false\n')
    done = run_tool("scan", "--config", str(config), "--deadline", deadline)
    assert done.returncode == 2 and "--deadline must be more than 0 seconds" in done.stderr, done.stderr
    assert not (tmp_path / "inv.db").exists()


@pytest.mark.parametrize("age", ["1000000000d", "99999999w", "999999999999h"])
def test_an_age_beyond_any_date_is_a_usage_error(tmp_path: Path, age: str) -> None:
    from fixtures.cases import HERE
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "000-pool.json").write_bytes((HERE / "xenserver" / "xcp-ng-8.3-pool" / "recording.json")
                                                     .read_bytes())
    run_tool("import", "recorded", str(tmp_path / "rec"), "--db", str(tmp_path / "x.db"))
    done = run_tool("prune", "--older-than", age, "--db", str(tmp_path / "x.db"))
    assert done.returncode == 2 and f"--older-than {age!r} is further back than any date" in done.stderr, done.stderr


def test_scan_judges_fail_on_before_collecting(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\npath = "{tmp_path / "inv.db"}"\n[cloudstack]\nversion = "4.20"\n'
                      '[[kvm]]\nname = "x"\nhosts = ["h"]\nuri = "test:///default"\nssh_facts = false\n')
    done = run_tool("scan", "--config", str(config), "--fail-on", "warn")
    assert done.returncode == 2 and "--fail-on 'warn'" in done.stderr and not (tmp_path / "inv.db").exists()


def _imported(tmp_path: Path) -> str:
    from fixtures.cases import HERE
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "000-pool.json").write_bytes((HERE / "xenserver" / "xcp-ng-8.3-pool" / "recording.json")
                                                     .read_bytes())
    run_tool("import", "recorded", str(tmp_path / "rec"), "--db", str(tmp_path / "x.db"))
    return str(tmp_path / "x.db")


def test_check_waits_for_the_writer_lock_like_every_writer(tmp_path: Path) -> None:
    """check writes findings (and upgrades an old schema): run beside prune it left findings of a pruned scan."""
    from inventory.lock import writer_lock
    db = _imported(tmp_path)
    with writer_lock(Path(db), 0):
        done = run_tool("check", "--db", db, "--cloudstack-version", "4.20", "--lock-timeout", "1")
    assert done.returncode == 5 and "being written by another cs-inventory" in done.stderr, done.stderr
    assert run_tool("check", "--db", db, "--cloudstack-version", "4.20", "--fail-on", "never").returncode == 0


def test_check_of_some_rules_reads_only_and_waits_for_no_writer(tmp_path: Path) -> None:
    from inventory.lock import writer_lock
    db = _imported(tmp_path)
    with writer_lock(Path(db), 0):  # a scan writing
        done = run_tool("check", "--db", db, "--cloudstack-version", "4.20", "--rule", "unmanaged-vms",
                        "--lock-timeout", "0", "--fail-on", "never")
    assert done.returncode == 0 and "not stored" in done.stdout, done.stderr


def test_a_database_behind_a_symlink_loop_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "a.db").symlink_to(tmp_path / "b.db")
    (tmp_path / "b.db").symlink_to(tmp_path / "a.db")
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\npath = "{tmp_path / "a.db"}"\n'
                      '[[kvm]]\nname = "x"\nhosts = ["h"]\nuri = "test:///default"\nssh_facts = false\n')
    done = run_tool("scan", "--config", str(config))
    assert done.returncode == 2 and "internal error" not in done.stderr and "a.db" in done.stderr, done.stderr


def test_a_database_named_through_a_symlink_shares_its_writer_lock(tmp_path: Path) -> None:
    from inventory.lock import DatabaseBusy, writer_lock
    real = tmp_path / "real.db"
    real.write_bytes(b"")
    (tmp_path / "link.db").symlink_to(real)
    with writer_lock(real, 0):
        with pytest.raises(DatabaseBusy):
            with writer_lock(tmp_path / "link.db", 0):
                pass


def test_a_full_disk_is_a_one_line_error_not_an_internal_error(tmp_path: Path) -> None:
    """A file-size limit stands in for a full disk: SQLite says 'disk I/O error' or 'database or disk is full'."""
    import resource
    db = _imported(tmp_path)
    size = Path(db).stat().st_size

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 4, size // 4))  # less than one scan writes
        import signal as signals
        signals.signal(signals.SIGXFSZ, signals.SIG_IGN)  # the write fails with EFBIG instead of killing us

    done = subprocess.run([str(TOOL), "import", "recorded", str(tmp_path / "rec"), "--db", db], capture_output=True,
                          text=True, timeout=120, preexec_fn=limited)
    assert done.returncode == 2 and "internal error" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"error: cannot write {db}: ") and "is the disk full" in done.stderr, done.stderr


def test_missing_database_and_usage_errors(tmp_path: Path) -> None:
    result = run_tool("export", "--db", str(tmp_path / "none.db"))
    assert result.returncode == 2 and "does not exist" in result.stderr
    result = run_tool("scan", "--bogus-option")
    assert result.returncode == 2
    assert run_tool("--help").stdout.count("Exit codes") == 1


def test_sigterm_mid_scan_never_leaves_a_half_written_scan(real_domains: Any, sshd: SshServer,
                                                           tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    config = write_config(tmp_path, sshd, extra=f"""
[[kvm]]
name = "hangs"
hosts = ["127.0.0.1"]
ssh_port = {listener.getsockname()[1]}
ssh_key = "{sshd.client_key}"
known_hosts = "{sshd.known_hosts}"
connect_timeout = 60
host_timeout = 60
""")
    first = run_tool("scan", "--config", str(config), "--only", "td")
    assert first.returncode == 0
    process = subprocess.Popen([str(TOOL), "scan", "--config", str(config)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while sum(1 for line in seen if line.startswith(("target td:", "target real:"))) < 2 and time.monotonic() < deadline:
        seen.append(process.stderr.readline())  # td and real finish; "hangs" never answers
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=20)
    stderr = "".join(seen) + rest
    listener.close()
    assert process.returncode == 3, stderr
    assert "terminated by SIGTERM" in stderr
    db = sqlite3.connect(tmp_path / "inv.db")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    scans = db.execute("SELECT id, status, error FROM scans ORDER BY id").fetchall()
    assert [s[1] for s in scans] == ["ok", "failed"] and "SIGTERM" in scans[1][2]
    targets = dict(db.execute("SELECT name, status FROM targets WHERE scan_id = 2").fetchall())
    assert targets == {"real": "ok", "td": "ok", "hangs": "failed"}
    assert db.execute("SELECT COUNT(*) FROM vms WHERE scan_id = 2 AND target = 'td'").fetchone() == (40,)
    # views keep showing the last scan that completed, not the interrupted one
    assert db.execute("SELECT DISTINCT scan_id FROM latest_vms").fetchall() == [(1,)]


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_history_limit_is_a_count_of_scans(tmp_path: Path, limit: str) -> None:
    """`--limit -1` listed every scan (SQLite's LIMIT -1 is no limit)."""
    done = run_tool("history", "--db", str(tmp_path / "none.db"), "--limit", limit)
    assert done.returncode == 2 and done.stderr.startswith(f"error: --limit must be at least 1, not {limit}"), \
        done.stderr


def test_import_waits_for_the_writer_lock_only_as_long_as_asked(tmp_path: Path) -> None:
    from inventory.lock import writer_lock
    db = tmp_path / "inv.db"
    dump = tmp_path / "pool.xml"
    from fixtures.xapi.synth import generate
    dump.write_text(generate(1, 1, "xcp-ng-8.3", seed="lock"))
    with writer_lock(db, 1):
        done = run_tool("import", "xapi-dump", str(dump), "--db", str(db), "--lock-timeout", "0.2")
    assert done.returncode == 5, done.stdout + done.stderr


def _two_scans(tmp_path: Path) -> str:
    db = _imported(tmp_path)
    run_tool("import", "recorded", str(tmp_path / "rec"), "--db", db)
    return db


OUTPUT_COMMANDS = [["export", "--format", "csv"], ["export", "--format", "json"], ["export", "--format", "ndjson"],
                   ["export", "--format", "xlsx"], ["export", "--format", "prometheus"],
                   ["export", "--format", "datasette-metadata"], ["report"], ["diff", "--format", "csv"]]


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm", ".lock", " (a symlink)"])
@pytest.mark.parametrize("command", OUTPUT_COMMANDS[:1] + OUTPUT_COMMANDS[3:5] + OUTPUT_COMMANDS[6:8])
def test_output_naming_the_database_is_refused_and_the_database_kept(tmp_path: Path, command: list[str],
                                                                    suffix: str) -> None:
    """`export -o inv.db` replaced the database with a CSV: every scan lost, exit 0."""
    db = _two_scans(tmp_path)
    before = Path(db).read_bytes()
    target = db + suffix
    if suffix == " (a symlink)":
        target = str(tmp_path / "link.csv")
        Path(target).symlink_to(db)
    done = run_tool(*command, "--db", db, "--output", target)
    assert done.returncode == 2 and done.stderr.startswith(f"error: --output {target} is the database"), done.stderr
    assert len(done.stderr.splitlines()) <= 2 and Path(db).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("where", ["folder", ""])
@pytest.mark.parametrize("command", OUTPUT_COMMANDS)
def test_output_that_is_a_folder_is_a_usage_error(tmp_path: Path, command: list[str], where: str) -> None:
    db = _two_scans(tmp_path)
    (tmp_path / "folder").mkdir()
    done = subprocess.run([str(TOOL), *command, "--db", db, "--output", where and str(tmp_path / where)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2 and "internal error" not in done.stderr, done.stderr
    assert done.stderr.startswith("error: --output ") and "is a folder" in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) <= 2


@pytest.mark.parametrize("command", OUTPUT_COMMANDS)
def test_a_write_that_fails_is_a_one_line_error_naming_the_file(tmp_path: Path, command: list[str]) -> None:
    db = _two_scans(tmp_path)
    done = run_tool(*command, "--db", db, "--output", "/dev/full")
    assert done.returncode == 2 and done.stderr.startswith("error: cannot write /dev/full: "), done.stderr
    assert "internal error" not in done.stderr and len(done.stderr.splitlines()) <= 2, done.stderr


@pytest.mark.parametrize("command", [c for c in OUTPUT_COMMANDS if "xlsx" not in c])
def test_standard_output_that_cannot_be_written_is_a_one_line_error(tmp_path: Path, command: list[str]) -> None:
    db = _two_scans(tmp_path)
    with open("/dev/full", "w") as full:
        done = subprocess.run([str(TOOL), *command, "--db", db], stdout=full, stderr=subprocess.PIPE, text=True,
                              timeout=60)
    assert done.returncode == 2 and done.stderr.startswith("error: cannot write standard output: "), done.stderr
    assert "internal error" not in done.stderr and len(done.stderr.splitlines()) <= 2, done.stderr


def test_a_file_size_limit_on_the_output_keeps_the_old_file(tmp_path: Path) -> None:
    import resource
    db = _two_scans(tmp_path)
    old = tmp_path / "vms.json"
    old.write_text("the old export\n")

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    done = subprocess.run([str(TOOL), "export", "--format", "json", "--db", db, "--output", str(old)],
                          capture_output=True, text=True, timeout=60, preexec_fn=limited)
    assert done.returncode == 2 and done.stderr.startswith(f"error: cannot write {old}: "), done.stderr
    assert old.read_text() == "the old export\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("command", [["export", "--format", "prometheus", "--output", "{out}"],
                                     ["export", "--format", "xlsx", "--output", "{out}"],
                                     ["export", "--format", "csv", "--output", "{out}"],
                                     ["report", "--output", "{out}"], ["prune", "--older-than", "90d"]])
def test_quiet_prints_nothing_on_success_and_errors_still(tmp_path: Path, command: list[str]) -> None:
    """Cron mails whatever a job prints: the documented cron lines must print nothing when all is well."""
    db = _imported(tmp_path)
    args = [a.replace("{out}", str(tmp_path / "out")) for a in command]
    done = run_tool(*args, "--quiet", "--db", db)
    assert done.returncode == 0 and done.stdout == "" and done.stderr == "", done.stdout + done.stderr
    failed = run_tool(*args, "--quiet", "--db", str(tmp_path / "none.db"))
    assert failed.returncode == 2 and failed.stderr.startswith("error: "), failed.stderr


def test_the_documented_cron_lines_are_quiet() -> None:
    from tests.conftest import ROOT
    for page in ("usage.md", "reports.md"):
        text = (ROOT / "docs" / page).read_text()
        blocks = [part for part in text.split("```")[1::2]  # what cron runs: its lines and the script it mails with
                  if part.startswith("cron\n") or part.startswith("sh\n") and "sendmail" in part]
        for line in "\n".join(blocks).splitlines():
            if line.startswith("#"):
                continue
            for command in line.split("cs-inventory ")[1:]:
                words = command.split(";")[0].split("&&")[0].split()
                if {"scan", "export", "report", "prune"} & set(words):
                    assert "--quiet" in words, (page, command)


def test_sigterm_while_writing_an_output_leaves_no_temporary_file(tmp_path: Path) -> None:
    """cron's or systemd's SIGTERM mid-export left `.vms.csv.xxxx.tmp` beside the export, run after run."""
    db = _imported(tmp_path)
    old = tmp_path / "vms.csv"
    old.write_text("the old export\n")
    slow = ("(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000) "
            "SELECT COUNT(*) FROM c) > 0")
    process = subprocess.Popen([str(TOOL), "export", "--db", db, "--where", slow, "--output", str(old)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]:
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == -signal.SIGTERM, stderr  # ended as SIGTERM ends a process
    assert "internal error" not in stderr and f"{old} was not written" in stderr, stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert old.read_text() == "the old export\n"


def test_output_to_dev_stdout_is_standard_output_appended_and_piped(tmp_path: Path) -> None:
    """`-o /dev/stdout >> app.csv` replaced app.csv (realpath led to it), losing its lines; in a pipe it failed
    (no folder to write a temporary file in)."""
    db = _imported(tmp_path)
    log = tmp_path / "app.csv"
    log.write_text("earlier line\n")
    with open(log, "a") as appended:
        done = subprocess.run([str(TOOL), "export", "--db", db, "--quiet", "-o", "/dev/stdout"], stdout=appended,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = log.read_text().splitlines()
    assert lines[0] == "earlier line" and lines[1].startswith("scan_id,") and len(lines) > 2
    piped = subprocess.run(f"{TOOL} export --db {db} -o /dev/stdout | head -1", shell=True, capture_output=True,
                           text=True, timeout=60)
    assert piped.stdout.startswith("scan_id,") and "error" not in piped.stderr, piped.stderr


def test_a_config_warning_is_logged_at_warning_level(tmp_path: Path) -> None:
    """It was logged at info: a log filter on warnings (journald, a SIEM) missed that a password went unencrypted."""
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\npath = "{tmp_path / "inv.db"}"\n[[xenserver]]\nname = "p"\n'
                      'url = "http://127.0.0.1:1/"\npassword_env = "CSI_WARN_PW"\n')
    config.chmod(0o600)
    log = tmp_path / "l.log"
    run_tool("--log-file", str(log), "--log-format", "json", "scan", "--config", str(config), "--quiet",
             env={"CSI_WARN_PW": "x"})
    warned = [json.loads(line) for line in log.read_text().splitlines() if '"config warning"' in line]
    assert warned and all(w["level"] == "warning" for w in warned), warned


def test_output_dash_is_standard_output(tmp_path: Path) -> None:
    db = _imported(tmp_path)
    done = subprocess.run([str(TOOL), "export", "--db", db, "-o", "-"], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("scan_id,"), done.stderr
    assert not (tmp_path / "-").exists()


def test_a_long_diff_shows_its_counts_and_the_first_changes_and_says_where_the_rest_are(tmp_path: Path) -> None:
    """It printed every change as one table: 8,000 changes of a 100,000-VM estate took 2.3 s of table layout and
    scrolled away. Now the counts per table, the first changes (--limit), and where every change is."""
    from inventory import open_store
    from tests.test_store import result, scan_row
    db = tmp_path / "inv.db"
    with open_store(db) as store:
        store.write_scan(scan_row(), [result(vms=1)])
        store.write_scan(scan_row(), [result(vms=251)])  # 250 VMs and their 250 disks added
    done = run_tool("diff", "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert "vms: 250 added" in done.stdout and "vm_disks: 250 added" in done.stdout
    assert done.stdout.count("│ added") == 200, done.stdout[-2000:]
    assert "300 more changes" in done.stdout and "--format csv" in done.stdout
    every = run_tool("diff", "--db", str(db), "--limit", "0")
    assert every.stdout.count("│ added") == 500 and "more changes" not in every.stdout
    few = run_tool("diff", "--db", str(db), "-n", "3")
    assert few.stdout.count("│ added") == 3 and "497 more changes" in few.stdout
    rows = list(csv.DictReader(io.StringIO(run_tool("diff", "--db", str(db), "--format", "csv").stdout)))
    assert len(rows) == 500
    bad = run_tool("diff", "--db", str(db), "--limit", "-1")
    assert bad.returncode == 2 and "--limit" in bad.stderr and len(bad.stderr.splitlines()) <= 2, bad.stderr


def test_a_short_diff_counts_in_words_that_agree_and_counts_the_findings_too(tmp_path: Path) -> None:
    """Review: `-n 1` said "1 more changes", and the findings new or resolved had no count of their own."""
    from inventory import open_store
    from inventory.checks import Finding, store_findings
    from tests.test_store import result, scan_row
    db = tmp_path / "inv.db"
    with open_store(db) as store:
        first = store.write_scan(scan_row(), [result(vms=1)])
        second = store.write_scan(scan_row(), [result(vms=2)])  # a VM and its disk added
        finding = Finding("host-memory", "error", "host", "h1", "t1", "h1 has 2 GiB", cluster="c1")
        store_findings(store, second, [finding, finding._replace(rule_id="xen-pool-ha", message="HA is off")])
        assert first
    done = run_tool("diff", "--db", str(db), "-n", "1")
    assert "1 more change," in done.stdout and "1 more new finding:" in done.stdout, done.stdout
    assert "findings: 2 new" in done.stdout, done.stdout
