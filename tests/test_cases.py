"""The collector contract, checked for every registered kind, and the recorded cases replayed.

A case (fixtures/<kind>/<case>/) is what a real or faithful server answered, as `scan --record`
wrote it, and the records the kind's normaliser makes of it. Replaying needs no server.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import time
from pathlib import Path

import pytest

from collectors.base import Collector
from fixtures.cases import HERE, as_json, case_folders, expected_of, load_case, replay
from inventory import recording, registry
from inventory.model import TargetConfig

CASES = case_folders()


def test_every_kind_has_recorded_cases() -> None:
    kinds_with_cases = {folder.parent.name for folder in CASES}
    assert set(registry.kinds()) <= kinds_with_cases, "record one with: python -m fixtures.cases record"


@pytest.mark.parametrize("kind", registry.kinds())
def test_every_kind_keeps_the_contract(kind: str) -> None:
    cls = registry.collector_class(kind)
    assert cls.kind == kind and cls.cloudstack_name
    assert issubclass(cls.Target, TargetConfig) and dataclasses.is_dataclass(cls.Target)
    assert cls.Target.__doc__ and cls.__doc__, "what it reads, from where: in the docstrings"
    for method in ("connect", "fetch", "normalise"):
        assert getattr(cls, method) is not getattr(Collector, method), f"{kind} does not implement {method}"
    assert isinstance(inspect.getattr_static(cls, "normalise"), staticmethod), "normalise is pure: no self"
    assert registry.cloudstack_name(kind) == cls.cloudstack_name


@pytest.mark.parametrize("folder", CASES, ids=lambda f: f"{f.parent.name}/{f.name}")
def test_a_recorded_case_replays_to_its_expected_records(folder: Path) -> None:
    read = load_case(folder)
    pristine = copy.deepcopy(read.answers)
    started = time.perf_counter()
    result = replay(read)
    elapsed = time.perf_counter() - started
    expected = json.loads((folder / "expected.json").read_text())
    assert as_json(expected_of(result)) == expected
    assert read.answers == pristine, "normalise must not change what it was given"
    assert elapsed < 1.0
    assert result.inventory.hosts or result.inventory.cloudstack_hosts, "a case shows at least one host"


@pytest.mark.parametrize("folder", CASES, ids=lambda f: f"{f.parent.name}/{f.name}")
def test_a_recording_survives_its_own_format(folder: Path, tmp_path: Path) -> None:
    read = load_case(folder)
    again = recording.load(recording.write(tmp_path, read))[0]
    assert again.answers == read.answers and again.endpoints == read.endpoints
    assert again.target == read.target


def test_cases_hold_no_secrets() -> None:
    for file in HERE.glob("*/*/recording.json"):
        text = file.read_text()
        for word in ("never-recorded", "cases-password", "keystore.passphrase", "licenseKey", "cs-inventory-admin-key",
                     "cs-inventory-admin-secret", "signature="):
            assert word not in text, f"{file}: {word}"
