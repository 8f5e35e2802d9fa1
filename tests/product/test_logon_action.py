"""The per-user logon action's definition and the MSI's policy values, checked without Windows
(the Windows lane registers the task and runs its command for real)."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path, PureWindowsPath

import pytest

from dgprov import logon_action
from dgprov.errors import UsageError

TASK = "{http://schemas.microsoft.com/windows/2004/02/mit/task}"
INSTALLED = Path(PureWindowsPath(r"C:\Program Files\dgprov"))


def test_the_task_runs_at_any_logon_as_that_user_without_a_window() -> None:
    root = ElementTree.fromstring(logon_action.task_xml(INSTALLED).split("\n", 1)[1])
    assert root.find(f"{TASK}Triggers/{TASK}LogonTrigger/{TASK}UserId") is None  # any user
    principal = root.find(f"{TASK}Principals/{TASK}Principal")
    assert principal is not None
    assert principal.findtext(f"{TASK}GroupId") == "S-1-5-32-545"  # BUILTIN\Users
    assert principal.findtext(f"{TASK}RunLevel") == "LeastPrivilege"
    settings = root.find(f"{TASK}Settings")
    assert settings is not None
    assert settings.findtext(f"{TASK}ExecutionTimeLimit") == "PT10M"
    assert settings.findtext(f"{TASK}Hidden") == "true"
    assert settings.findtext(f"{TASK}MultipleInstancesPolicy") == "Parallel"  # per user
    command = root.findtext(f"{TASK}Actions/{TASK}Exec/{TASK}Command")
    assert command is not None and command.endswith("dgprov-logon.exe")  # no console window
    assert root.findtext(f"{TASK}Actions/{TASK}Exec/{TASK}Arguments") == "fetch-config --at-logon"
    recorded = logon_action.logon_command(INSTALLED)
    assert recorded.startswith('"') and recorded.endswith('" fetch-config --at-logon')


def test_policy_values_leave_out_what_was_not_given_and_check_the_rest() -> None:
    assert logon_action.policy_values(
        ["Source=entra", "Tenant=contoso.example", "ClientId=", "BrokerUrl= "]
    ) == {"Source": "entra", "Tenant": "contoso.example"}
    with pytest.raises(UsageError, match="Source is 'ldap'"):
        logon_action.policy_values(["Source=ldap"])
    with pytest.raises(UsageError, match="use Name=value"):
        logon_action.policy_values(["Colour=blue"])
