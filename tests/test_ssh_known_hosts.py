"""known_hosts as OpenSSH writes it: marker lines (@cert-authority, @revoked) and lines that are not understood cost
the SSH facts of a host at most — said in one line — never the host's libvirt data, never an internal error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from collectors.kvm import KvmCollector, KvmTarget
from collectors.ssh_facts import SshSession
from fixtures.sshd import SshServer
from fixtures.testdriver import write_cluster
from inventory.errors import HostKeyRejected

CA_LINE = "@cert-authority *.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBk5x1ZCjRL1mg8F6KwNNUWAkOzlO5rbwZvDwXTHcr+h\n"


def plain_line(sshd: SshServer) -> str:
    return sshd.known_hosts.read_text()


def revoked_line(sshd: SshServer) -> str:
    return "@revoked " + plain_line(sshd)


def connect(sshd: SshServer, known_hosts: Path) -> SshSession:
    return SshSession("127.0.0.1", port=sshd.port, user="root", key_file=sshd.client_key, known_hosts=known_hosts,
                      timeout=5, command_timeout=5)


def test_cert_authority_lines_are_skipped_and_said_when_the_key_is_not_found(sshd: SshServer, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(CA_LINE + plain_line(sshd))
    connect(sshd, known).close()  # the plain line still trusts the host
    known.write_text(CA_LINE)
    with pytest.raises(HostKeyRejected) as caught:
        connect(sshd, known)
    said = caught.value.one_line()
    assert "not in" in said and "@cert-authority" in said and "\n" not in said, said


def test_a_revoked_host_key_is_refused_even_when_listed_as_trusted(sshd: SshServer, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(plain_line(sshd) + revoked_line(sshd))
    with pytest.raises(HostKeyRejected) as caught:
        connect(sshd, known)
    assert "revoked" in caught.value.one_line() and str(known) in caught.value.one_line()


def test_a_plain_line_not_understood_is_skipped_as_openssh_does_and_said_when_the_key_is_not_found(
        sshd: SshServer, tmp_path: Path) -> None:
    """One garbled line in a shared known_hosts failed the SSH facts of every host; OpenSSH skips it. Skipping a
    plain line trusts nothing more."""
    known = tmp_path / "known_hosts"
    known.write_text("[10.9.9.9]:22 ssh-ed25519 !!!not-base64!!!\n" + plain_line(sshd))
    connect(sshd, known).close()
    known.write_text("[10.9.9.9]:22 ssh-ed25519 !!!not-base64!!!\n")
    with pytest.raises(HostKeyRejected) as caught:
        connect(sshd, known)
    said = caught.value.one_line()
    assert "not in" in said and "line 1" in said and "not understood" in said, said


@pytest.mark.parametrize("line", ["@revoked [127.0.0.1]:22 ssh-ed25519 !!!not-base64!!!\n",
                                  "@frobnicate x ssh-ed25519 AAAA\n"])
def test_a_line_not_understood_is_a_host_key_error_naming_the_line(sshd: SshServer, tmp_path: Path, line: str) -> None:
    """A revocation that cannot be read, or a marker we do not know, might refuse this host: it is not skipped."""
    known = tmp_path / "known_hosts"
    known.write_text(plain_line(sshd) + "# a comment\n" + line)
    with pytest.raises(HostKeyRejected) as caught:
        connect(sshd, known)
    said = caught.value.one_line()
    assert f"{known} line 3" in said and "\n" not in said, said


@pytest.mark.parametrize("lines", ["ca", "revoked", "garbled"])
def test_a_known_hosts_problem_costs_the_facts_only_not_the_libvirt_data(sshd: SshServer, tmp_path: Path,
                                                                        lines: str) -> None:
    (host,) = write_cluster(tmp_path / "td", hosts=1, domains_per_host=3)
    shutil.copy(host.path, tmp_path / "td" / "127.0.0.1.xml")
    known = tmp_path / "known_hosts"
    known.write_text({"ca": CA_LINE, "revoked": plain_line(sshd) + revoked_line(sshd),
                      "garbled": "@revoked 127.0.0.1 ssh-ed25519 !!!\n"}[lines])
    target = KvmTarget(name="td", hosts=("127.0.0.1",), uri=f"test://{tmp_path / 'td'}/{{host}}.xml",
                       ssh_port=sshd.port, ssh_key=sshd.client_key, known_hosts=known, cluster="c")
    result = KvmCollector(target).collect()
    assert result.status == "partial", result.error
    assert len(result.inventory.hosts) == 1 and len(result.inventory.vms) == 3
    assert result.error and "internal error" not in result.error and "ssh" in result.error, result.error
