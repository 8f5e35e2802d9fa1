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
    least privilege), hidden, one instance at a time, stopped after ``TIME_LIMIT``."""
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
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
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


def register(install_dir: Path) -> None:
    """Register the task for the programs in ``install_dir`` and record it (run as SYSTEM by the
    MSI; an administrator can run it again to repair)."""
    if sys.platform != "win32":
        raise UsageError("the logon action is a Windows scheduled task; run this on Windows")
    if not (install_dir / LOGON_EXE).is_file():
        raise UsageError(f"{install_dir / LOGON_EXE} is missing: reinstall dgprov")
    import winreg

    with tempfile.TemporaryDirectory(prefix="dgprov-task-") as folder:
        definition = Path(folder) / "task.xml"
        definition.write_text(task_xml(install_dir), encoding="utf-16")
        created = _schtasks("/Create", "/TN", TASK_NAME, "/XML", str(definition), "/F")
    if created.returncode != 0:
        shown = (created.stderr or created.stdout).strip().splitlines()
        raise UsageError(
            f"schtasks refused the logon task: {shown[0] if shown else created.returncode}"
        )
    with winreg.CreateKeyEx(winreg.HKEY_LOCAL_MACHINE, INSTALL_KEY, 0, winreg.KEY_WRITE) as key:
        winreg.SetValueEx(key, "LogonTask", 0, winreg.REG_SZ, TASK_NAME)
        winreg.SetValueEx(key, "LogonCommand", 0, winreg.REG_SZ, logon_command(install_dir))


def remove() -> None:
    """Delete the task and its record; a task already gone is no error (uninstall repeats)."""
    if sys.platform != "win32":
        raise UsageError("the logon action is a Windows scheduled task; run this on Windows")
    import winreg

    _schtasks("/Delete", "/TN", TASK_NAME, "/F")
    try:
        winreg.DeleteKey(winreg.HKEY_LOCAL_MACHINE, INSTALL_KEY)  # its two values with it
    except FileNotFoundError:
        return


def installed_folder() -> Path:
    """Where the running dgprov.exe is installed: the folder the task's program is in."""
    if not getattr(sys, "frozen", False):
        raise UsageError("run the installed dgprov.exe: the task starts the programs beside it")
    return Path(sys.executable).resolve().parent
