"""Hypervisor SDKs are loaded only when a target of their kind is read.

A plain install (no libvirt-python, paramiko, XenAPI or pyvmomi) reads databases, exports,
checks and imports dumps; a target whose SDK is missing fails alone, with a one-line reason that
names what to install, and the other targets are collected. The SDKs are made absent here the
way Python sees a package that is not installed: importing them raises ImportError.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.testdriver import write_cluster
from fixtures.xapi.server import XapiServer, serve_dump
from fixtures.xapi.synth import generate
from tests.conftest import TOOL

SDKS = ("libvirt", "libvirtmod", "paramiko", "XenAPI", "pyVmomi", "pyVim")


def without(tmp_path: Path, modules: tuple[str, ...]) -> dict[str, str]:
    """An environment whose Python cannot import ``modules`` (a sitecustomize that blocks them)."""
    folder = tmp_path / "no-sdk"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules))
    return {"PYTHONPATH": str(folder), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(TOOL), *args], capture_output=True, text=True, timeout=60, env=env)


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[XapiServer]:
    dump = tmp_path / "pool.xml"
    dump.write_text(generate(2, 8, "xcp-ng-8.3", seed="plain"))
    server = serve_dump(dump, password="xenroot")
    yield server
    server.stop()


def test_the_blocking_is_real(tmp_path: Path) -> None:
    env = without(tmp_path, SDKS)
    probe = subprocess.run([sys.executable, "-c", "import libvirt"], capture_output=True, text=True, env=env)
    assert probe.returncode != 0 and "import of libvirt halted" in probe.stderr


def test_reading_commands_work_with_no_sdk_at_all(tmp_path: Path) -> None:
    env = without(tmp_path, SDKS)
    dump = tmp_path / "pool.xml"
    dump.write_text(generate(2, 8, "xcp-ng-8.3", seed="plain"))
    db = str(tmp_path / "plain.db")
    version = run(env, "--version")
    assert version.returncode == 0 and version.stdout.startswith("cs-inventory "), version.stderr
    for _ in range(2):
        imported = run(env, "import", "xapi-dump", str(dump), "--db", db)
        assert imported.returncode == 0, imported.stderr
    commands = [["export", "--db", db, "--table", "vms", "--format", "csv"], ["show", "--db", db],
                ["history", "--db", db], ["diff", "--db", db], ["rules"],
                ["check", "--db", db, "--cloudstack-version", "4.20", "--fail-on", "never"],
                ["report", "--db", db, "--format", "html", "--output", str(tmp_path / "audit.html")],
                ["export", "--db", db, "--format", "prometheus", "--output", str(tmp_path / "cs.prom")],
                ["export", "--db", db, "--format", "xlsx", "--output", str(tmp_path / "inventory.xlsx")],
                ["export", "--db", db, "--format", "datasette-metadata", "--output", str(tmp_path / "metadata.json")],
                ["prune", "--db", db, "--keep", "1"]]
    for command in commands:
        done = run(env, *command)
        assert done.returncode == 0 and "error" not in done.stderr, (command, done.stderr)
    assert "i-" in run(env, "export", "--db", db, "--table", "vms", "--format", "csv").stdout
    assert "cs_inventory_vms{" in (tmp_path / "cs.prom").read_text() and "Drift" in (tmp_path / "audit.html").read_text()


def test_a_target_whose_sdk_is_missing_fails_alone(tmp_path: Path, pool: XapiServer) -> None:
    env = without(tmp_path, ("libvirt", "libvirtmod", "paramiko"))
    hosts = write_cluster(tmp_path / "td", hosts=2, domains_per_host=2)
    (tmp_path / "pw").write_text("xenroot")
    (tmp_path / "pw").chmod(0o600)
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\npath = "inv.db"\n[[kvm]]\nname = "kvm"\nhosts = ["{hosts[0].name}"]\n'
                      f'uri = "test://{tmp_path / "td"}/{{host}}.xml"\nssh_facts = false\n'
                      f'[[xenserver]]\nname = "pool"\nurl = "{pool.url}"\npassword_file = "{tmp_path / "pw"}"\n')
    config.chmod(0o600)
    scanned = run(env, "scan", "--config", str(config))
    assert scanned.returncode == 3, scanned.stderr
    targets = run(env, "export", "--config", str(config), "--table", "targets", "--format", "csv").stdout
    kvm_line = next(line for line in targets.splitlines() if line.startswith("1,kvm,"))
    assert ",failed," in kvm_line and "libvirt-python is not installed" in kvm_line
    assert "cs-inventory[kvm]" in kvm_line and "python3-libvirt" in kvm_line
    assert "1,pool,xenserver," in targets and ",ok," in targets.split("1,pool,xenserver,")[1]
