"""``dist/windows/dgprov-<version>-x64.msi``: dgprov's own per-machine MSI, built with wixl.

What it does on Windows (``packaging/windows/dgprov.wxs`` is the product; this script adds
the files of the one-folder build):
- installs ``dist/windows/dgprov`` into ``%ProgramFiles%\\dgprov``;
- writes its public properties (SOURCE, TENANT, CLIENTID, BROKERURL, BROKERSCOPE, ATTRIBUTESET,
  ADATTRIBUTE) to ``HKLM\\SOFTWARE\\Policies\\dgprov``, which ``fetch-config`` reads;
- registers the per-user logon action (``dgprov.exe logon-action register``, deferred, as
  SYSTEM), and on uninstall removes it before the files go. Every user's ``provisioning.json``
  stays.

wixl (Debian's msitools) parses a subset of WiX 3: a missing ``Impersonate`` means
no-impersonate, ``Directory=`` on a custom action is ignored (``FileKey`` is used), and there is
no ICE validation (the Windows reference, section D4). Component GUIDs are derived from the
file's path, so they stay the same from one version to the next, as Windows Installer's
component rules want.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path
from xml.sax.saxutils import quoteattr

REPO = Path(__file__).resolve().parents[2]
PRODUCT = Path(__file__).resolve().parent / "dgprov.wxs"
FOLDER = REPO / "dist" / "windows" / "dgprov"
NAMESPACE = uuid.UUID("6f1f3c52-8d4e-4c1b-9f3a-2b7d5e0a9c41")  # dgprov's components
EXE_FILE_ID = "DgprovExe"  # the custom actions run it (FileKey)


def version() -> str:
    text = (REPO / "src" / "dgprov" / "__init__.py").read_text("utf-8")
    found = re.search(r'__version__ = "([^"]+)"', text)
    assert found is not None
    return found.group(1)


def msi_path() -> Path:
    return REPO / "dist" / "windows" / f"dgprov-{version()}-x64.msi"


def _identifier(prefix: str, relative: str) -> str:
    """An MSI identifier (letters, digits, _ and ., at most 72) that is stable for a path."""
    return f"{prefix}_{uuid.uuid5(NAMESPACE, relative).hex}"


def files_fragment(folder: Path) -> str:
    """A WiX fragment with every file of ``folder``, in its directory tree under INSTALLDIR, as
    the component group DgprovFiles."""
    components: list[str] = []

    def directory(path: Path, depth: int) -> str:
        indent = "  " * depth
        lines = []
        for child in sorted(path.iterdir()):
            relative = child.relative_to(folder).as_posix()
            if child.is_dir():
                lines.append(
                    f"{indent}<Directory Id={quoteattr(_identifier('dir', relative))} "
                    f"Name={quoteattr(child.name)}>"
                )
                lines.append(directory(child, depth + 1))
                lines.append(f"{indent}</Directory>")
                continue
            component = _identifier("cmp", relative)
            file_id = EXE_FILE_ID if relative == "dgprov.exe" else _identifier("fil", relative)
            guid = uuid.uuid5(NAMESPACE, "component:" + relative)
            lines.append(
                f'{indent}<Component Id="{component}" Guid="{guid}" Win64="yes">'
                f'<File Id="{file_id}" Source={quoteattr(relative)} KeyPath="yes"/>'
                "</Component>"
            )
            components.append(component)
        return "\n".join(line for line in lines if line)

    tree = directory(folder, 3)
    references = "\n".join(f'      <ComponentRef Id="{c}"/>' for c in components)
    return f"""<?xml version="1.0" encoding="utf-8"?>
<Wix xmlns="http://schemas.microsoft.com/wix/2006/wi">
  <Fragment>
    <DirectoryRef Id="INSTALLDIR">
{tree}
    </DirectoryRef>
  </Fragment>
  <Fragment>
    <ComponentGroup Id="DgprovFiles">
{references}
    </ComponentGroup>
  </Fragment>
</Wix>
"""


def build(folder: Path = FOLDER, output: Path | None = None) -> Path:
    """Build the MSI from ``folder`` with wixl; the path of the MSI."""
    output = output or msi_path()
    if not (folder / "dgprov.exe").is_file() or not (folder / "dgprov-logon.exe").is_file():
        raise SystemExit(f"{folder} holds no dgprov.exe and dgprov-logon.exe: make windows")
    fragment = REPO / "build" / "windows" / "msi-files.wxs"
    fragment.parent.mkdir(parents=True, exist_ok=True)
    fragment.write_text(files_fragment(folder), encoding="utf-8")
    partial = output.with_name(output.name + ".partial")
    completed = subprocess.run(
        [
            "wixl", "--arch", "x64", "--define", f"Version={version()}",
            "--output", str(partial.resolve()), str(PRODUCT), str(fragment.resolve()),
        ],
        cwd=folder,  # wixl finds a File's Source relative to here, never by absolute path
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    if completed.returncode != 0:
        partial.unlink(missing_ok=True)
        raise SystemExit(f"wixl failed: {completed.stderr.strip()[-2000:]}")
    partial.replace(output)
    return output


if __name__ == "__main__":
    print(build().relative_to(REPO))
    sys.exit(0)
