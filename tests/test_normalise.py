import pytest

from inventory.normalise import (
    parse_instance_name, parse_properties, power_state_from_libvirt, prefix_to_netmask, to_bytes,
    version_from_int,
)


@pytest.mark.parametrize("name, role, account, cs_id", [
    ("i-2-10-VM", "user", 2, 10),
    ("i-123-45678-VM", "user", 123, 45678),
    ("i-2-10-CLOUD", "user", 2, 10),          # instance.name set to CLOUD
    ("r-4-VM", "router", None, 4),
    ("s-1-VM", "ssvm", None, 1),
    ("v-2-VM", "cpvm", None, 2),
    ("b-7-VM", "internal_lb", None, 7),         # InternalLoadBalancerVMManagerImpl: getSystemVmName(id, instance, "b")
    ("i-2-VM", "unmanaged", None, None),      # a user VM name needs account and id
    ("x-1-VM", "unmanaged", None, None),
    ("r-4-VM-old", "unmanaged", None, None),
    ("backup-appliance", "unmanaged", None, None),
    ("", "unmanaged", None, None),
])
def test_instance_names_follow_cloudstack_naming(name: str, role: str, account: int | None, cs_id: int | None) -> None:
    parsed = parse_instance_name(name)
    assert (parsed.role, parsed.account_id, parsed.cs_id) == (role, account, cs_id)


def test_sizes_default_to_kib_like_libvirt() -> None:
    assert to_bytes("524288") == 512 * 1024 * 1024
    assert to_bytes("64", "MiB") == 64 * 1024 * 1024
    assert to_bytes("1", "GB") == 10**9
    assert to_bytes(None) is None
    with pytest.raises(ValueError):
        to_bytes("1", "parsecs")


def test_libvirt_versions_and_states() -> None:
    assert version_from_int(9000000) == "9.0.0"
    assert version_from_int(7002022) == "7.2.22"
    assert power_state_from_libvirt(1) == "running"
    assert power_state_from_libvirt(5) == "stopped"
    assert power_state_from_libvirt(None) is None
    assert prefix_to_netmask(24) == "255.255.255.0"


def test_agent_properties_format() -> None:
    text = "# comment\n\nzone=1\npod = 2\nguid=abc-LibvirtComputingResource\nhost=10.0.0.1,10.0.0.2\nempty=\nkey\\\n  =continued\n"
    props = parse_properties(text)
    assert props["zone"] == "1" and props["pod"] == "2"
    assert props["host"] == "10.0.0.1,10.0.0.2"
    assert props["empty"] == ""
    assert props["key"] == "continued"


def test_redact_blanks_every_secret_and_a_cut_off_beginning_of_one() -> None:
    from inventory.normalise import one_line, redact
    assert redact("login[root, Hunter2pw, x] again Hunter2pw", ("Hunter2pw",)) == "login[root, ***, x] again ***"
    cut = one_line("INTERNAL_ERROR login[root, Hunter2pw]", 32)  # cut inside the password
    assert "Hunt" in cut and "Hunt" not in redact(cut, ("Hunter2pw",)) and redact(cut, ("Hunter2pw",)).endswith("***…")
    assert redact("nothing here", ()) == "nothing here"


def test_a_short_secret_is_blanked_where_it_stands_alone_not_inside_our_words() -> None:
    """A password "x" made "xenapi http://…" read "***enapi http://…": inside a word a short secret is not the
    secret a server echoed; alone (between quotes, brackets, spaces) it is."""
    from inventory.normalise import redact
    assert redact("xenapi http://127.0.0.1:1/: connection refused", ("x",)) == \
        "xenapi http://127.0.0.1:1/: connection refused"
    assert redact("session.login_with_password['root', 'x'] failed", ("x",)) == \
        "session.login_with_password['root', '***'] failed"
    assert redact("<string>pw1</string> and pw10", ("pw1",)) == "<string>***</string> and pw10"
    assert redact("prefixHunter2pwsuffix", ("Hunter2pw",)) == "prefix***suffix"  # long: blanked wherever it is


def test_a_secret_with_runs_of_spaces_is_blanked_after_one_line_squeezed_them() -> None:
    """one_line makes "a  b" "a b" before redact sees it: the password leaked with one space less."""
    from inventory.normalise import one_line, redact
    for secret in ("Hunter2  echoed  back", "Hunter2\techoed"):
        said = one_line(f"INTERNAL_ERROR login_with_password[root, {secret}, x]")
        assert redact(said, (secret,)) == "INTERNAL_ERROR login_with_password[root, ***, x]"


def test_a_character_beyond_the_basic_plane_is_escaped_unambiguously() -> None:
    from inventory.normalise import printable
    assert printable("a\U0001fffeb") == "a\\U0001fffeb"  # not "a\\u1fffeb": U+1FFF then "eb"
