"""The per-user logon action on Windows: ``fetch-config`` in each user's own logon session.

Installers run as SYSTEM, where no Entra or broker sign-in can happen (no browser in session 0,
WAM refuses SYSTEM, a device code would be shown to nobody). So dgprov's MSI registers a
scheduled task that any user's logon triggers and that runs as that user, with limited rights,
no window (``dgprov-logon.exe`` is the same program built for the Windows subsystem) and a
bound run time. The command it runs is ``fetch-config --at-logon``, which does nothing once
that user is provisioned (a per-user marker), so later logons cost one start and no request.

``HKLM\\SOFTWARE\\dgprov`` records what was registered: the task's name and the exact command
line (``LogonTask``, ``LogonCommand``). ``fetch-config`` as SYSTEM reads it to decide between
"deferred to the user's logon" and an error, Intune can use it as a detection rule, and the
Windows lane runs the recorded command line. Wine keeps a task's registration but not its
trigger or action, which is why the command is recorded apart.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from xml.sax.saxutils import escape

from . import policy
from .errors import UsageError

INSTALL_KEY = r"SOFTWARE\dgprov"
TASK_NAME = r"\dgprov\fetch-config at logon"
LOGON_EXE = "dgprov-logon.exe"  # the windowless build of dgprov.exe, beside it
LOGON_ARGUMENTS = "fetch-config --at-logon"
TIME_LIMIT = "PT10M"  # a stuck sign-in never outlives ten minutes
USERS_GROUP_SID = "S-1-5-32-545"  # BUILTIN\Users: every interactive user
SCHTASKS_SECONDS = 60


def logon_command(install_dir: Path) -> str:
    """The command line the task runs, quoted as Windows parses it."""
    return f'"{install_dir / LOGON_EXE}" {LOGON_ARGUMENTS}'


def task_xml(install_dir: Path) -> str:
    """The task definition: triggered by any user's logon, run as that user (the Users group,
    least privilege), hidden, stopped after ``TIME_LIMIT``. Instances run in parallel: the
    policy is the task's, not a user's, so one user's run must not swallow another's logon."""
    command = escape(str(install_dir / LOGON_EXE))
    return f"""<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo>
    <Author>dgprov</Author>
    <Description>Provisions the Defguard client of whoever signs in, once per user.</Description>
  </RegistrationInfo>
  <Triggers>
    <LogonTrigger>
      <Enabled>true</Enabled>
      <Delay>PT15S</Delay>
    </LogonTrigger>
  </Triggers>
  <Principals>
    <Principal id="Users">
      <GroupId>{USERS_GROUP_SID}</GroupId>
      <RunLevel>LeastPrivilege</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <MultipleInstancesPolicy>Parallel</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <StartWhenAvailable>true</StartWhenAvailable>
    <Hidden>true</Hidden>
    <ExecutionTimeLimit>{TIME_LIMIT}</ExecutionTimeLimit>
    <Enabled>true</Enabled>
  </Settings>
  <Actions Context="Users">
    <Exec>
      <Command>{command}</Command>
      <Arguments>{escape(LOGON_ARGUMENTS)}</Arguments>
    </Exec>
  </Actions>
</Task>
"""


def registered() -> bool:
    """Whether dgprov's installer registered the logon action on this machine."""
    if sys.platform != "win32":
        return False
    import winreg

    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, INSTALL_KEY) as key:
            value, _ = winreg.QueryValueEx(key, "LogonTask")
    except OSError:
        return False
    return isinstance(value, str) and bool(value.strip())


def _schtasks(*arguments: str) -> subprocess.CompletedProcess[str]:
    system = Path(os.environ.get("SYSTEMROOT", r"C:\Windows")) / "System32" / "schtasks.exe"
    try:
        return subprocess.run(
            [str(system), *arguments],
            capture_output=True,
            text=True,
            timeout=SCHTASKS_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"schtasks.exe could not run ({exc})") from None


def policy_values(given: list[str]) -> dict[str, str]:
    """``Name=value`` pairs for the policy key, as the MSI passes its properties: an empty
    value (a property not given) is left out, so a repair never blanks a value; the rest are
    checked as ``fetch-config`` checks the key."""
    values: dict[str, str] = {}
    for pair in given:
        name, sep, value = pair.partition("=")
        if not sep or name not in policy.SETTINGS:
            raise UsageError(
                f"--policy {name!r}: use Name=value with one of {', '.join(policy.SETTINGS)}"
            )
        if value.strip():
            values[name] = value.strip()
    policy.parse_policy(values, f"HKLM\\{policy.WINDOWS_KEY}")
    return values


def register(install_dir: Path, settings: dict[str, str] | None = None) -> None:
    """Register the task for the programs in ``install_dir``, record it, and write ``settings``
    (policy value name -> value) to the policy key. Run as SYSTEM by the MSI; an administrator
    can run it again to repair."""
    if sys.platform != "win32":
        raise UsageError("the logon action is a Windows scheduled task; run this on Windows")
    if not (install_dir / LOGON_EXE).is_file():
        raise UsageError(f"{install_dir / LOGON_EXE} is missing: reinstall dgprov")
    import winreg

    if settings:
        flags = winreg.KEY_WRITE | winreg.KEY_WOW64_64KEY
        with winreg.CreateKeyEx(winreg.HKEY_LOCAL_MACHINE, policy.WINDOWS_KEY, 0, flags) as key:
            for name, value in settings.items():
                winreg.SetValueEx(key, name, 0, winreg.REG_SZ, value)

    with tempfile.TemporaryDirectory(prefix="dgprov-task-") as folder:
        definition = Path(folder) / "task.xml"
        definition.write_text(task_xml(install_dir), encoding="utf-16")
        created = _schtasks("/Create", "/TN", TASK_NAME, "/XML", str(definition), "/F")
    if created.returncode != 0:
        shown = (created.stderr or created.stdout).strip().splitlines()
        raise UsageError(
            f"schtasks refused the logon task: {shown[0] if shown else created.returncode}"
        )
    flags = winreg.KEY_WRITE | winreg.KEY_WOW64_64KEY
    with winreg.CreateKeyEx(winreg.HKEY_LOCAL_MACHINE, INSTALL_KEY, 0, flags) as key:
        winreg.SetValueEx(key, "LogonTask", 0, winreg.REG_SZ, TASK_NAME)
        winreg.SetValueEx(key, "LogonCommand", 0, winreg.REG_SZ, logon_command(install_dir))


def remove() -> None:
    """Delete the task, its record and the policy key; what is already gone is no error
    (uninstall repeats). Every user's ``provisioning.json`` stays."""
    if sys.platform != "win32":
        raise UsageError("the logon action is a Windows scheduled task; run this on Windows")
    import winreg

    _schtasks("/Delete", "/TN", TASK_NAME, "/F")
    for key in (INSTALL_KEY, policy.WINDOWS_KEY):  # each with its values; a GPO rewrites its own
        try:
            winreg.DeleteKeyEx(winreg.HKEY_LOCAL_MACHINE, key, winreg.KEY_WOW64_64KEY, 0)
        except FileNotFoundError:
            continue


def installed_folder() -> Path:
    """Where the running dgprov.exe is installed: the folder the task's program is in."""
    if not getattr(sys, "frozen", False):
        raise UsageError("run the installed dgprov.exe: the task starts the programs beside it")
    return Path(sys.executable).resolve().parent
