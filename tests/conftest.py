"""Shared fixtures: the real libvirtd, a private sshd, real domains, test-driver clusters.

Heavy fixtures start real services; they never skip. In CI (CS_INVENTORY_CI=1) a test that
tries to skip fails instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures import estate
from fixtures.libvirtd import LabDomain, define_domains, ensure_libvirtd, machine_lock, remove_domains
from fixtures.sshd import SshServer, start_sshd

ROOT = Path(__file__).resolve().parent.parent
TOOL = Path(sys.executable).with_name("cs-inventory")
SHARED_XAPI = ROOT.parent / "shared" / "testdata" / "xapi"
REAL_DUMPS = sorted(SHARED_XAPI.glob("*.xml"))
NO_SHARED = (f"the real pool dumps are not beside this clone ({SHARED_XAPI}); the synthetic dumps cover the same "
             "code, and CI runs these")
TEST_POOL = "cs-inventory-test"
# CloudStack-named domains in the real libvirtd; account 901 keeps them apart from the lab's.
REAL_DOMAINS = [
    LabDomain("i-901-1-VM", running=True, memory_mib=64, vcpus=1, description="Ubuntu 22.04 LTS"),
    LabDomain("i-901-2-VM", running=False, memory_mib=128, vcpus=2, disks_mib=[16, 24],
              bridges=["cloudbr0", "cloudbr1"], description="Rocky Linux 9"),
    LabDomain("r-901-VM", running=True, memory_mib=64, vcpus=1, bridges=["cloudbr0", "cloudbr1"]),
    LabDomain("unmanaged-901", running=False, memory_mib=80, vcpus=1, disks_mib=[8]),
]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if os.environ.get("CS_INVENTORY_CI") and report.skipped and report.when != "teardown":
        raise pytest.UsageError(f"{report.nodeid} skipped in CI: heavy tests must run here")


def real_dump_params() -> list[Any]:
    """The real pool dumps to parametrize over; outside CI, one skipped case (with the reason) when they are absent."""
    return list(REAL_DUMPS) or [pytest.param(None, marks=pytest.mark.skip(reason=NO_SHARED), id="real-dumps")]


def real_dump(name: str) -> Path:
    """One real pool dump by name; the test skips (fails in CI) when ../shared is not beside the clone."""
    path = SHARED_XAPI / name
    if not path.exists():
        pytest.skip(NO_SHARED)
    return path


@pytest.fixture(scope="session")
def libvirtd() -> Iterator[str]:
    """The machine's one libvirtd; a test session holds it alone (other checkouts' sessions and the lab wait),
    since sessions define and remove domains in it."""
    with machine_lock():
        ensure_libvirtd()
        yield "qemu:///system"


@pytest.fixture(scope="session")
def real_domains(libvirtd: str) -> Iterator[list[LabDomain]]:
    pool_path = Path("/var/lib/libvirt/images") / TEST_POOL  # where the QEMU user may read disks
    remove_domains([d.name for d in REAL_DOMAINS], TEST_POOL)  # whatever an aborted run left
    define_domains(REAL_DOMAINS, TEST_POOL, pool_path)
    yield REAL_DOMAINS
    remove_domains([d.name for d in REAL_DOMAINS], TEST_POOL)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    server = start_sshd(tmp_path_factory.mktemp("sshd"), addresses=("127.0.0.1",))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def lab_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab-like database of fixtures/estate.py (two scans, findings, CloudStack differences): read, never
    written, by the tests that share it."""
    return estate.build(tmp_path_factory.mktemp("estate") / "lab-like.db")


def run_tool(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the installed console script, as a user would."""
    return subprocess.run([str(TOOL), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def virsh(*args: str) -> str:
    return subprocess.run(["virsh", "-c", "qemu:///system", *args], check=True, capture_output=True,
                          text=True).stdout
