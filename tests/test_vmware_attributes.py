"""CloudStack's custom attributes on vSphere VMs (``cloud.vm.internal.name``, ``cloud.vm.worker``): read by the
fast parser exactly as pyvmomi's path reads them, and turned into the VM's instance name and role. Offline: the
answers are vCenter's SOAP as the simulator sends it (tests/test_vmware.py reads the simulator itself)."""

from __future__ import annotations

import pytest

from collectors.vmware_fast import FastPathError, parse_objects

XSI = 'xmlns:XMLSchema-instance="http://www.w3.org/2001/XMLSchema-instance" XMLSchema-instance:type'


def prop(name: str, kind: str, value: str, *, closed: bool = False) -> str:
    if closed:
        return f'<propSet><name>{name}</name><val {XSI}="{kind}"/></propSet>'
    return f'<propSet><name>{name}</name><val {XSI}="{kind}">{value}</val></propSet>'


def custom(key: int, value: str | None, kind: str = "CustomFieldStringValue") -> str:
    shown = "" if value is None else f"<value>{value}</value>"
    return f'<CustomFieldValue XMLSchema-instance:type="{kind}"><key>{key}</key>{shown}</CustomFieldValue>'


def vm_xml(moid: str, *props: str) -> str:
    return f'<objects><obj type="VirtualMachine">{moid}</obj>{"".join(props)}</objects>'


def test_the_fast_parser_reads_custom_values_as_pyvmomi_does() -> None:
    text = (vm_xml("vm-1", prop("name", "xsd:string", "web &amp; db"),
                   prop("customValue", "ArrayOfCustomFieldValue",
                        custom(0, "i-2-10-VM &amp; &lt;x&gt;") + custom(0, "i-2-11-VM") + custom(1, "")))
            + vm_xml("vm-2", prop("customValue", "ArrayOfCustomFieldValue", "")))
    first, second = parse_objects(text)
    # pyvmomi's plain(): each value's wsdl type, its key as a number, its text (an empty text kept)
    assert first["customValue"] == [{"_type": "CustomFieldStringValue", "key": 0, "value": "i-2-10-VM & <x>"},
                                    {"_type": "CustomFieldStringValue", "key": 0, "value": "i-2-11-VM"},
                                    {"_type": "CustomFieldStringValue", "key": 1, "value": ""}]
    assert first["name"] == "web & db" and second["customValue"] == []


def test_an_empty_value_written_as_one_tag_does_not_swallow_the_next_property() -> None:
    (record,) = parse_objects(vm_xml("vm-3", prop("customValue", "ArrayOfCustomFieldValue", "", closed=True),
                                     prop("name", "xsd:string", "after"),
                                     prop("config.template", "xsd:boolean", "", closed=True)))
    assert record["customValue"] == [] and record["name"] == "after"
    with pytest.raises(FastPathError):  # a bare CustomFieldValue without its key is not guessed at
        parse_objects(vm_xml("vm-4", prop("customValue", "ArrayOfCustomFieldValue",
                                          '<CustomFieldValue XMLSchema-instance:type="CustomFieldStringValue">'
                                          "<value>x</value></CustomFieldValue>")))
    with pytest.raises(FastPathError):  # other arrays still fall back to pyvmomi
        parse_objects(vm_xml("vm-5", prop("tag", "ArrayOfTag", "<Tag><key>a</key></Tag>")))
