"""CloudStack's custom attributes on vSphere VMs (``cloud.vm.internal.name``, ``cloud.vm.worker``): read by the
fast parser exactly as pyvmomi's path reads them, and turned into the VM's instance name and role. Offline: the
answers are vCenter's SOAP as the simulator sends it (tests/test_vmware.py reads the simulator itself)."""

from __future__ import annotations

from typing import Any

import pytest

from collectors.vmware_fast import FastPathError, parse_objects
from collectors.vmware_normalise import normalise_vcenter
from inventory.matching import instance_name_of, is_worker

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


def raw(*vms: dict[str, Any], fields: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"custom_fields": fields if fields is not None else [
        {"_type": "CustomFieldDef", "key": 0, "name": "cloud.vm.internal.name", "managedObjectType": "VirtualMachine"},
        {"_type": "CustomFieldDef", "key": 1, "name": "cloud.vm.worker", "managedObjectType": "VirtualMachine"},
        {"_type": "CustomFieldDef", "key": 2, "name": "cloud.uuid", "managedObjectType": "VirtualMachine"},
        {"_type": "CustomFieldDef", "key": 3, "name": "owner", "managedObjectType": "VirtualMachine"}],
        "vms": list(vms)}


def value(key: int, text: str) -> dict[str, Any]:
    return {"_type": "CustomFieldStringValue", "key": key, "value": text}


def test_cloudstacks_attributes_give_the_instance_name_and_role() -> None:
    inv = normalise_vcenter(raw(
        {"_moid": "vm-1", "name": "web-frontend", "config.instanceUuid": "u1",
         "customValue": [value(0, "i-2-7-VM"), value(2, "5f1e"), value(3, "alice")]},
        {"_moid": "vm-2", "name": "i-2-8-VM", "config.instanceUuid": "u2",
         "customValue": [value(0, "i-2-99-VM"), value(0, "i-2-8-VM")]},  # set twice: the last one holds
        {"_moid": "vm-3", "name": "ROOT-12-worker", "config.instanceUuid": "u3", "customValue": [value(1, "true")]},
        {"_moid": "vm-4", "name": "legacy-box", "config.instanceUuid": "u4", "customValue": [value(1, "false")]},
        {"_moid": "vm-5", "name": "r-4-VM", "config.instanceUuid": "u5"}), "vc")
    vms = {v.name: v for v in inv.vms}
    web = vms["web-frontend"]
    assert (web.instance_name, web.cs_role, web.cs_account_id, web.cs_id) == ("i-2-7-VM", "user", 2, 7)
    assert web.raw_json == {"moid": "vm-1", "cloud.vm.internal.name": "i-2-7-VM", "cloud.uuid": "5f1e"}
    assert instance_name_of(web) == "i-2-7-VM" and not is_worker(web)
    assert vms["i-2-8-VM"].instance_name == "i-2-8-VM" and vms["i-2-8-VM"].cs_id == 8
    worker = vms["ROOT-12-worker"]
    assert worker.cs_role == "worker" and is_worker(worker) and worker.raw_json == {"moid": "vm-3",
                                                                                     "cloud.vm.worker": "true"}
    assert vms["legacy-box"].cs_role == "unmanaged" and not is_worker(vms["legacy-box"])
    assert (vms["r-4-VM"].cs_role, vms["r-4-VM"].raw_json) == ("router", {"moid": "vm-5"})


def test_an_internal_name_outside_cloudstacks_naming_is_still_cloudstacks_vm() -> None:
    # vm.instancename.flag = true: the instance name is the display name; the attribute says it is CloudStack's
    inv = normalise_vcenter(raw({"_moid": "vm-1", "name": "webserver", "config.instanceUuid": "u1",
                                 "customValue": [value(0, "webserver")]}), "vc")
    (vm,) = inv.vms
    assert (vm.instance_name, vm.cs_role, vm.cs_id) == ("webserver", "user", None)


def test_values_of_unknown_keys_and_no_definitions_are_left_alone() -> None:
    inv = normalise_vcenter(raw({"_moid": "vm-1", "name": "i-2-3-VM", "config.instanceUuid": "u1",
                                 "customValue": [value(7, "x")]}, fields=[]), "vc")
    (vm,) = inv.vms
    assert (vm.instance_name, vm.cs_role, vm.raw_json) == ("i-2-3-VM", "user", {"moid": "vm-1"})
