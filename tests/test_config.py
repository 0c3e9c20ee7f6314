from pathlib import Path

import pytest

from inventory import ConfigError, Secret, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cs-inventory.toml"
    path.write_text(text)
    return path


GOOD = """
[database]
path = "data/inv.db"
[cloudstack]
version = "4.20"
[cloudstack.traffic_labels]
management = "cloudbr0"
[[kvm]]
name = "zone1-kvm"
cluster = "cluster1"
hosts = ["kvm01.example", "kvm02.example"]
ssh_key = "keys/id_ed25519"
known_hosts = "~/.ssh/known_hosts"
"""


def test_design_example_loads_with_defaults_and_relative_paths(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.database_path == tmp_path / "data/inv.db"
    assert config.cloudstack_version == "4.20"
    assert config.traffic_labels == {"management": "cloudbr0"}
    (target,) = config.targets
    assert target.name == "zone1-kvm"
    assert target.hosts == ("kvm01.example", "kvm02.example")  # type: ignore[attr-defined]
    assert target.uri == "qemu+ssh://{user}@{host}/system"  # type: ignore[attr-defined]
    assert target.ssh_user == "root" and target.ssh_port == 22  # type: ignore[attr-defined]
    assert target.ssh_key == tmp_path / "keys/id_ed25519"  # type: ignore[attr-defined]
    assert target.known_hosts == Path.home() / ".ssh/known_hosts"  # type: ignore[attr-defined]


@pytest.mark.parametrize("text, expected", [
    ('[[kvm]]\nname = "a"\nhosts = ["h"]\nssh_prot = 22\n', "[[kvm]] #1 (name 'a'): unknown key 'ssh_prot'"),
    ('[[kvm]]\nname = "a"\n', "[[kvm]] #1 (name 'a'): missing key 'hosts'"),
    ('[[kvm]]\nname = "a"\nhosts = "h1"\n', "[[kvm]] #1 (name 'a'): hosts must be a list of strings"),
    ('[[kvm]]\nname = "a"\nhosts = ["h"]\nssh_port = "22"\n', "ssh_port must be a whole number"),
    ('[[kvm]]\nname = "a"\nhosts = []\n', "hosts must list at least one host"),
    ('[[kvm]]\nname = "a"\nhosts = ["h"]\nuri = "qemu+ssh://{usr}@{host}/system"\n', "uri template"),
    ('[[kvm]]\nname = "a"\nhosts = ["h"]\n[[kvm]]\nname = "a"\nhosts = ["g"]\n', "target name 'a' is used twice"),
    ('[kvm]\nname = "a"\n', "write targets as [[kvm]]"),
    ('[[hyperv]]\nname = "a"\n', "unknown table [hyperv]"),
    ('[database]\npth = "x"\n', "[database]: unknown key 'pth'"),
    ('[cloudstack]\nversion = 4.2\n', "version must be a string"),
    ('[[kvm]]\nname = ""\nhosts = ["h"]\n', "[[kvm]] #1 (name ''): name must not be empty"),
    ('[[kvm]]\nname = " "\nhosts = ["h"]\n', "name must not be empty"),
    ('[[kvm]]\nname = "a"\nhosts = ["h", ""]\n', "hosts must not hold an empty name"),
    # a user (or a password) or URI syntax in a host name: never echoed, it may hold a password
    ('[[kvm]]\nname = "a"\nhosts = ["h", "root:Hunter2pw@kvm01"]\n', "hosts entry 2 is not a host name or address"),
    ('[[kvm]]\nname = "a"\nhosts = ["kvm01/system?command=x"]\n', "hosts entry 1 is not a host name or address"),
    ('[[kvm]]\nname = "a"\nhosts = ["kvm 01"]\n', "hosts entry 1 is not a host name or address"),
    ('[cloudstack]\nversion = "banana"\n', "[cloudstack] version: CloudStack version 'banana' is not like 4.20"),
    ('[[kvm]\nname = "a"\n', "not valid TOML"),
])
def test_bad_config_names_file_entry_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = caught.value.one_line()
    assert str(path) in message
    assert expected in message
    assert "\n" not in message and "Hunter2pw" not in message


def test_missing_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found") as caught:
        load_config(tmp_path / "nope.toml")
    assert caught.value.hint and "--config" in caught.value.hint


def test_secrets_are_references_and_never_shown(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = Secret("env", "CSI_TEST_PASSWORD")
    monkeypatch.setenv("CSI_TEST_PASSWORD", "hunter2-very-secret")
    assert secret.reveal() == "hunter2-very-secret"
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret)
    monkeypatch.delenv("CSI_TEST_PASSWORD")
    with pytest.raises(ConfigError, match="CSI_TEST_PASSWORD is not set"):
        secret.reveal()
    secret_file = tmp_path / "pw"
    secret_file.write_text("s3cr3t\n")
    assert Secret("file", str(secret_file)).reveal() == "s3cr3t"


def test_cloudstack_settings_and_features_as_the_operator_states_them(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[cloudstack]\nversion = "4.22"\nfeatures = ["security-groups"]\n'
                                         '[cloudstack.settings]\n"pool.storage.capacity.disablethreshold" = 0.9\n'
                                         '"ca.plugin.root.auth.strictness" = false\n'))
    assert config.settings == {"pool.storage.capacity.disablethreshold": "0.9", "ca.plugin.root.auth.strictness": "false"}
    assert config.features == ("security-groups",)
    for bad in ('features = ["teleport"]', 'settings = "x"'):
        with pytest.raises(ConfigError):
            load_config(write(tmp_path, f'[cloudstack]\n{bad}\n'))


MINIMAL_TARGETS = {
    "kvm": {"name": "k", "hosts": '["kvm01.example"]'},
    "xenserver": {"name": "x", "url": '"https://xen-master.example"', "password_env": '"XPW"'},
    "vmware": {"name": "v", "host": '"vcenter.example"', "username": '"reader"', "password_env": '"VPW"'},
    "cloudstack_api": {"name": "c", "url": '"https://cs.example:8443/client/api"', "api_key": '"k"',
                       "secret_key_env": '"CSK"'},
}


def _documented_required() -> dict[str, list[str]]:
    """The keys docs/configuration.md's generated table calls required, per target kind."""
    from inventory import docs
    required: dict[str, list[str]] = {}
    kind = ""
    for line in docs.config_reference().splitlines():
        if line.startswith("`[["):
            kind = line[3:line.index("]]")]
        elif line.startswith("| `") and "| required |" in line:
            keys = [part.strip(" `") for part in line.split("|")[1].split("/")]
            required.setdefault(kind, []).append(keys[0].removesuffix("_env"))
    return required


@pytest.mark.parametrize("kind", sorted(MINIMAL_TARGETS))
def test_a_key_the_reference_calls_required_is_refused_when_missing(tmp_path: Path, kind: str) -> None:
    entry = MINIMAL_TARGETS[kind]
    load_config(write(tmp_path, f"[[{kind}]]\n" + "".join(
        f'{k} = {v}\n' if k != "name" else f'name = "{v}"\n' for k, v in entry.items())))
    documented = _documented_required()[kind]
    assert {k.removesuffix("_env") for k in entry} <= set(documented), f"{kind}: a needed key is not called required"
    for key in documented:
        if key == "name":
            continue
        kept = {k: v for k, v in entry.items() if k.split("_env")[0] != key}
        assert kept != entry, f"{kind}: the test's minimal config lacks {key}"
        text = f"[[{kind}]]\n" + "".join(f'{k} = {v}\n' if k != "name" else f'name = "{v}"\n' for k, v in kept.items())
        with pytest.raises(ConfigError, match=key):
            load_config(write(tmp_path, text))


def test_the_reference_shows_empty_lists_as_toml() -> None:
    from inventory import docs
    assert "`()`" not in docs.config_reference()
    assert "| `clusters` | `[]` |" in docs.config_reference()


XEN = '[[xenserver]]\nname = "pool1"\npassword_env = "X"\nurl = "{}"\n'
CS = '[[cloudstack_api]]\nname = "cs"\napi_key = "k"\nsecret_key_env = "X"\nurl = "{}"\n'
VC = '[[vmware]]\nname = "vc1"\nusername = "u"\npassword_env = "X"\nhost = "{}"\n'
KVM = '[[kvm]]\nname = "k"\nhosts = ["h"]\nuri = "{}"\n'


@pytest.mark.parametrize("table, value, expected", [
    (XEN, "root:Hunter2pw@xen-master.example", "url: "),  # no scheme
    (XEN, "https:/root:Hunter2pw@xen-master.example", "url: "),  # one slash
    (XEN, "https://root:Hunter2pw@", "url: "),
    (XEN, "host:443:root:Hunter2pw", "url must look like"),
    (XEN, "https://host:443:root:Hunter2pw/", "url must look like"),  # a port that is no number
    (XEN, "https://root@xen-master.example", "url: "),  # a user name too: username says it
    (CS, "admin:Hunter2pw@cs.example:8443/client/api", "url: "),
    (CS, "https:/admin:Hunter2pw@cs.example/client/api", "url: "),
    (CS, "cs.example:8443:admin:Hunter2pw", "url must look like"),
    (VC, "https://vcuser:Hunter2pw@127.0.0.1", "host must be a bare host name or address"),
    (VC, "vcuser:Hunter2pw@127.0.0.1", "host must be a bare host name or address"),
    (VC, "vcenter.example:443", "host must be a bare host name or address"),
    (VC, "vcenter.example/Hunter2pw", "host must be a bare host name or address"),
    (KVM, "qemu+ssh:/root:Hunter2pw@{host}/system", "uri: "),
    (KVM, "qemu+ssh://root:Hunter2pw@{host}/system", "uri: "),
    (KVM, "qemu+ssh://root:Hunter2pw@{host}/system?keyfile=/home/ops@corp/id", "uri: "),
])
def test_a_url_or_host_that_may_hold_a_password_is_refused_without_repeating_it(
        tmp_path: Path, table: str, value: str, expected: str) -> None:
    path = write(tmp_path, table.format(value))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = caught.value.one_line()
    assert expected in message and "Hunter2pw" not in message and "\n" not in message, message
    assert value not in message


@pytest.mark.parametrize("table, value", [
    (VC, "vcenter.example"), (VC, "10.0.0.5"), (VC, "fe80::1"), (VC, "[fe80::1]"), (VC, "vc-01.lab_a.example"),
    (XEN, "https://xen-master.example"), (XEN, "http://10.0.0.5:8080/"), (XEN, "https://[fe80::1]:443/"),
    (CS, "https://cs.example:8443/client/api"), (KVM, "qemu+ssh://{user}@{host}:{port}/system"),
    # an "@" past the host (a key file in an SSSD home, a query) is no password; it was refused
    (KVM, "qemu+ssh://{user}@{host}/system?keyfile=/home/ops@corp/id"), (CS, "https://cs.example/client/api?x=a@b"),
    (VC, "vcenter.bücher.example"),  # an IDN name, as its xn-- form is
])
def test_urls_and_hosts_without_credentials_are_accepted(tmp_path: Path, table: str, value: str) -> None:
    (target,) = load_config(write(tmp_path, table.format(value))).targets
    if table == VC:  # as it is connected to: an address without its URL brackets
        assert target.host == value.strip("[]")  # type: ignore[attr-defined]


@pytest.mark.parametrize("host", ["kvm1:2222", "kvm1:22:x"])
def test_a_kvm_host_with_a_port_is_refused_pointing_at_ssh_port(tmp_path: Path, host: str) -> None:
    """It was accepted, then every scan failed it as an internal error (a ":" made it an IPv6 address)."""
    with pytest.raises(ConfigError, match="ssh_port"):
        load_config(write(tmp_path, f'[[kvm]]\nname = "k"\nhosts = ["{host}"]\n'))
    assert load_config(write(tmp_path, '[[kvm]]\nname = "k"\nhosts = ["fe80::1", "[fe80::2]", "10.0.0.1"]\n'))


def test_unverified_tls_and_plain_http_are_warned_about_per_target(tmp_path: Path) -> None:
    text = (XEN.format("http://xen-master.example").replace('"pool1"', '"pool-http"')
            + XEN.format("https://xen-master.example").replace('"pool1"', '"pool-unverified"') + "verify_tls = false\n"
            + XEN.format("https://xen-master.example").replace('"pool1"', '"pool-pinned"') + "verify_tls = false\n"
            + f'fingerprint = "{"ab" * 32}"\n'
            + XEN.format("https://xen-master.example").replace('"pool1"', '"pool-fine"')
            + VC.format("vcenter.example") + "verify_tls = false\n"
            + CS.format("http://cs.example:8080/client/api"))
    from inventory.config import transport_warnings
    config = load_config(write(tmp_path, text))
    warnings = transport_warnings(config.targets)
    assert transport_warnings([t for t in config.targets if t.name == "pool-fine"]) == ()  # --only another target
    said = "\n".join(warnings)
    assert [w for w in warnings if "pool-http" in w and "url is http://" in w and "unencrypted" in w], said
    assert [w for w in warnings if "pool-unverified" in w and "verify_tls = false" in w and "not checked" in w], said
    assert [w for w in warnings if "vc1" in w and "verify_tls = false" in w], said
    assert [w for w in warnings if "target cs:" in w and "url is http://" in w], said
    assert "pool-pinned" not in said and "pool-fine" not in said
    assert all("\n" not in w for w in warnings) and len(warnings) == 4, said


@pytest.mark.parametrize("table", [XEN.format("https://xen-master.example"), VC.format("vcenter.example"),
                                   CS.format("https://cs.example:8443/client/api")])
@pytest.mark.parametrize("problem", ["missing", "not a certificate"])
def test_a_ca_file_that_is_missing_or_no_certificate_is_a_config_error_naming_the_key(
        tmp_path: Path, table: str, problem: str) -> None:
    from tests.conftest import run_tool
    ca = tmp_path / "ca.pem"
    if problem != "missing":
        ca.write_text("not a PEM certificate\n")
    config = write(tmp_path, f'[database]\npath = "{tmp_path / "inv.db"}"\n' + table + f'ca_file = "{ca}"\n')
    done = run_tool("scan", "--config", str(config), env={"X": "pw"})
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert "ca_file" in line and str(ca) in line and problem in line, done.stderr
    assert not (tmp_path / "inv.db").exists() or "scan" not in done.stdout
