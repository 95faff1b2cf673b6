"""The offline run (components/offline.py) that `make plan` uses: it records what the checked test
mocks record, and refuses an invoke it does not know, as they do."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pytest

from components import offline, testing
from tests.components.conftest import make_settings


def _recorded(run: offline.StackRun) -> list[tuple]:
    # Registration order follows input resolution and varies between runs; the URN is the identity.
    return sorted((r.urn, r.type, r.name, r.parent, r.custom, r.provider.rsplit("::", 1)[0],
                   tuple(sorted(r.dependencies)), repr(r.inputs), sorted(r.secret_inputs)) for r in run)


def test_the_plan_records_what_the_checked_mocks_record(project: Path) -> None:
    settings = make_settings()
    planned = offline.run_stack(settings, project_root=project)
    checked = testing.run_stack(settings, project_root=project)
    assert len(planned) > 20
    assert _recorded(planned) == _recorded(checked)
    assert planned.outputs == checked.outputs and planned.secret_outputs == checked.secret_outputs


def test_an_unknown_invoke_is_refused_offline_too() -> None:
    with pytest.raises(offline.UnmockedInvokeError, match="'azure-native:x:getY' is not mocked"):
        offline.OfflineMocks().call(pulumi.runtime.MockCallArgs("azure-native:x:getY", {}, ""))
