"""The one lock ``dgprov sync`` and ``dgprov generate-tokens`` share (``host_lock.py``), through
the real CLI in a process of its own against the sandbox: what may stand at the lock path, two
jobs at once, and a default place that will not do. Every refusal is exit 2 within the 5 s the
issue allows, names the path, and leaves Defguard untouched."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dgprov.errors import UsageError
from dgprov.host_lock import host_lock

from ..conftest import Running, StartSandbox
from .test_sync import entra_args, tenant, token_hashes

JOBS = ["sync", "generate-tokens"]
DEADLINE = 5.0  # the "exit 2 within 5 s"
NOBODY = 65534
needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="gives files to another account"
)


def job_environment(running: Running, cache: Path, lock: Path | None) -> dict[str, str]:
    """The job's environment; ``lock`` None: no ``DGPROV_LOCK_FILE``, the default place."""
    env = {
        **os.environ,
        "DEFGUARD_API_TOKEN": running.info["api_token"],
        "DGPROV_CLIENT_SECRET": running.info["client_secret"],
        "DGPROV_CACHE_DIR": str(cache),
    }
    env.pop("DGPROV_LOCK_FILE", None)
    if lock is not None:
        env["DGPROV_LOCK_FILE"] = str(lock)
    return env


def run_job(
    running: Running, tmp_path: Path, command: str, lock: Path | None, *prefix: str
) -> subprocess.CompletedProcess[str]:
    """One unattended run (client secret), given at most ``DEADLINE`` to answer."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", "dgprov", *entra_args(running, command)],
        env=job_environment(running, tmp_path / "cache", lock),
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


def refused(completed: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert completed.returncode == 2, completed.stdout + completed.stderr
    for text in expected:
        assert text in completed.stderr, completed.stderr


# ------------------------------------------------------------------- what stands at the path


def fifo(path: Path, tmp_path: Path) -> str:
    os.mkfifo(path)
    return "is a FIFO"


def link_to_file(path: Path, tmp_path: Path) -> str:
    (tmp_path / "precious").write_text("keep me", "utf-8")
    path.symlink_to(tmp_path / "precious")
    return "is a symbolic link"


def link_to_fifo(path: Path, tmp_path: Path) -> str:
    os.mkfifo(tmp_path / "pipe")
    path.symlink_to(tmp_path / "pipe")
    return "is a symbolic link"


def planted_by_nobody(path: Path) -> None:
    """Another account's lock file with a forged holder's note (root only)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("needs root to give the file to another account")
    path.write_text(" dgprov sync, pid 1, user nobody, started 2020-01-01T00:00:00Z", "utf-8")
    path.chmod(0o600)
    os.chown(path, NOBODY, NOBODY)


def another_accounts_file(path: Path, tmp_path: Path) -> str:
    planted_by_nobody(path)
    return f"belongs to another account (uid {NOBODY})"


def open_to_everyone(path: Path, tmp_path: Path) -> str:
    path.write_bytes(b"")
    path.chmod(0o644)
    return "can be opened by every account (mode 0644)"


PLANTED: dict[str, Callable[[Path, Path], str]] = {
    "FIFO": fifo,
    "link to a file": link_to_file,
    "link to a FIFO": link_to_fifo,
    "another account's file": another_accounts_file,
    "a file every account may open": open_to_everyone,
}


@pytest.mark.parametrize("command", JOBS)
@pytest.mark.parametrize("planted", list(PLANTED))
def test_what_is_not_this_accounts_regular_file_is_refused_at_once(
    start_sandbox: StartSandbox, tmp_path: Path, command: str, planted: str
) -> None:
    """A FIFO used to hang every run in ``open()``; a link, another account's file (with a
    forged holder note) or one any account may open could be held by someone else forever."""
    running = start_sandbox(tenant())
    lock = tmp_path / "dgprov.lock"
    problem = PLANTED[planted](lock, tmp_path)
    completed = run_job(running, tmp_path, command, lock)
    refused(completed, f"the lock file {lock} {problem}", "DGPROV_LOCK_FILE")
    assert token_hashes(running) == {}  # refused before Defguard was asked for anything
    if planted == "link to a file":
        assert (tmp_path / "precious").read_text("utf-8") == "keep me"


@needs_root
@pytest.mark.parametrize("command", JOBS)
def test_roots_own_file_is_accepted_where_another_accounts_is_refused(
    start_sandbox: StartSandbox, tmp_path: Path, command: str
) -> None:
    running = start_sandbox(tenant())
    lock = tmp_path / "dgprov.lock"
    another_accounts_file(lock, tmp_path)
    refused(run_job(running, tmp_path, command, lock), str(lock))
    os.chown(lock, 0, 0)  # the same file, root's now: the fix the refusal names
    lock.chmod(0o640)
    completed = run_job(running, tmp_path, command, lock)
    assert completed.returncode == 0, completed.stderr
    assert f"holding the lock {lock}" in completed.stderr
    assert len(token_hashes(running)) == 4


# ------------------------------------------------------------------------- two jobs at once


def waiting_for_sign_in(running: Running, tmp_path: Path, command: str) -> subprocess.Popen[str]:
    """A job that holds the lock for as long as the test likes: it waits at the device-code
    sign-in, which nobody approves."""
    assert running.sandbox.entra is not None
    running.sandbox.entra.auto_approve_upn = None
    args = entra_args(running, command)
    args[args.index("--client-id") + 1] = running.info["client_id"]
    args[args.index("--auth") + 1] = "device-code"
    return subprocess.Popen(
        [sys.executable, "-m", "dgprov", *args],
        env=job_environment(running, tmp_path / "cache", tmp_path / "dgprov.lock"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def first_job() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        process.kill()
        process.communicate(timeout=30)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("sync", "sync"),
        ("sync", "generate-tokens"),
        ("generate-tokens", "sync"),
        ("generate-tokens", "generate-tokens"),
    ],
)
def test_a_second_job_is_refused_naming_the_lock_and_the_holder(
    start_sandbox: StartSandbox,
    tmp_path: Path,
    first_job: list[subprocess.Popen[str]],
    first: str,
    second: str,
) -> None:
    """Two syncs at once left members holding tokens Defguard had deleted, and
    ``generate-tokens`` took no lock at all."""
    running = start_sandbox(tenant())
    lock = tmp_path / "dgprov.lock"
    holder = waiting_for_sign_in(running, tmp_path, first)
    first_job.append(holder)
    deadline = time.monotonic() + 60
    while not lock.exists() or f"pid {holder.pid}," not in lock.read_text("utf-8", "replace"):
        assert holder.poll() is None, "the first job ended"
        assert time.monotonic() < deadline, "the first job never took the lock"
        time.sleep(0.05)
    completed = run_job(running, tmp_path, second, lock)
    refused(
        completed,
        f"another dgprov {first} is running on this host (pid {holder.pid}, user ",
        f"lock {lock}",
    )
    assert holder.poll() is None  # the first is not disturbed
    assert token_hashes(running) == {}


# -------------------------------------------------------------- a default place that will not do


@needs_root
@pytest.mark.parametrize("command", JOBS)
def test_roots_default_place_unwritable_is_an_error_not_the_temporary_directory(
    start_sandbox: StartSandbox, tmp_path: Path, command: str
) -> None:
    """``/run`` read-only (a sandboxed service, or /run/lock missing): the run used to move its
    lock to the temporary directory without a word, where another run need not find it."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1)")
    read_only_run = ["unshare", "--mount", "sh", "-c", 'mount -t tmpfs -o ro tmpfs /run && "$@"']
    probe = subprocess.run([*read_only_run, "sh", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount in a namespace of its own: {probe.stderr!r}")
    running = start_sandbox(tenant())
    completed = run_job(running, tmp_path, command, None, *read_only_run, "sh")
    refused(completed, "cannot create the lock directory /run/dgprov", "DGPROV_LOCK_FILE")
    assert token_hashes(running) == {}


AS_NOBODY = """
import os, sys
# imported while root's files can still be read: the interpreter lives under root's home
import concurrent.futures.thread, fcntl, msal, dgprov.cli, dgprov.entra_auth
os.setgroups([]); os.setgid(65534); os.setuid(65534)
sys.argv = ["dgprov", *sys.argv[1:]]
dgprov.cli.main()
"""


@pytest.fixture
def nobodys_cache() -> Iterator[Path]:
    """A directory for ``DGPROV_CACHE_DIR`` outside root's private temporary directories."""
    cache = Path(tempfile.mkdtemp(prefix="dgprov-cache-"))
    os.chown(cache, NOBODY, NOBODY)
    yield cache
    shutil.rmtree(cache)


def readable_by_others(path: Path) -> bool:
    """Whether an account that owns none of it (uid 65534) can read ``path``: every folder on
    the way searchable by others, the file readable by them."""
    folders_searchable = all(stat.S_IMODE(p.stat().st_mode) & 0o001 for p in path.parents)
    return bool(folders_searchable and stat.S_IMODE(path.stat().st_mode) & 0o004)


def as_nobody(
    running: Running, cache: Path, *extra: str, timeout: float = DEADLINE
) -> subprocess.CompletedProcess[str]:
    """``dgprov sync`` as uid 65534, ``DGPROV_CACHE_DIR`` at ``cache`` and no lock file named;
    the CLI starts as root and drops to that account for good before it parses an option."""
    ca_bundle = cache / "ca.pem"  # the sandbox keeps its own where only root may read
    shutil.copyfile(running.info["ca_bundle"], ca_bundle)
    args = entra_args(running, "sync", *extra)
    args[args.index("--ca-bundle") + 1] = str(ca_bundle)
    return subprocess.run(
        [sys.executable, "-c", AS_NOBODY, *args],
        env=job_environment(running, cache, None),
        cwd="/",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@needs_root
@pytest.mark.parametrize("place", ["root's directory", "every account's directory"])
def test_another_accounts_default_place_that_will_not_do_is_an_error(
    start_sandbox: StartSandbox, nobodys_cache: Path, place: str
) -> None:
    """An account other than root keeps its lock in its own cache directory: where that cannot
    hold it, the run says so, naming the place and ``DGPROV_LOCK_FILE``."""
    running = start_sandbox(tenant())
    if place == "root's directory":
        os.chown(nobodys_cache, 0, 0)
        nobodys_cache.chmod(0o755)
        expected = f"cannot create the lock file {nobodys_cache}/dgprov-sync.lock (Permission"
    else:
        nobodys_cache.chmod(0o777)
        expected = f"the lock directory {nobodys_cache} can be written by other accounts"
    refused(as_nobody(running, nobodys_cache), expected, "DGPROV_LOCK_FILE")
    assert token_hashes(running) == {}


@needs_root
def test_another_account_locks_a_private_file_in_its_cache_directory(
    start_sandbox: StartSandbox, nobodys_cache: Path
) -> None:
    import httpcore  # a whole run imports modules lazily, after the switch to uid 65534

    if not readable_by_others(Path(httpcore.__file__)):
        pytest.skip("this checkout's .venv is not readable by other accounts (a 0700 parent)")
    running = start_sandbox(tenant())
    completed = as_nobody(running, nobodys_cache, "--dry-run", timeout=120)
    assert completed.returncode == 0, completed.stderr
    lock = nobodys_cache / "dgprov-sync.lock"
    assert f"holding the lock {lock}" in completed.stderr
    status = lock.stat()
    assert status.st_uid == NOBODY and stat.S_IMODE(status.st_mode) == 0o600


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX modes")
@pytest.mark.parametrize(
    ("mode", "sticky"), [(0o1777, " sticky or not:"), (0o777, ""), (0o770, "")]
)
def test_a_lock_in_a_directory_other_accounts_may_write_is_refused_sticky_or_not(
    tmp_path: Path, mode: int, sticky: str
) -> None:
    """In ``/tmp`` (sticky) nobody can remove this account's file, but anyone can create the
    lock's name first and stop every run; elsewhere anyone could also swap it under a run."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    refusal = (
        f"the lock directory {shared} can be written by other accounts (mode {mode:04o}),{sticky}"
        " any of them could create the lock first, or replace it, and stop every run: set "
        "DGPROV_LOCK_FILE to a file in a directory only this account (or root) can write"
    )
    with pytest.raises(UsageError) as caught, host_lock(shared / "dgprov.lock"):
        pass
    assert str(caught.value) == refusal
    assert not (shared / "dgprov.lock").exists()


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX modes")
@pytest.mark.parametrize("command", JOBS)
@pytest.mark.parametrize("planted", [False, True])
def test_a_named_lock_in_a_sticky_directory_is_refused_whatever_stands_there(
    start_sandbox: StartSandbox, tmp_path: Path, command: str, planted: bool
) -> None:
    """The place is refused, not only what another account planted there: the run says to
    move the lock, which no planted file can then stop."""
    running = start_sandbox(tenant())
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    lock = sticky / "dgprov.lock"
    if planted:
        planted_by_nobody(lock)
    started = time.monotonic()
    completed = run_job(running, tmp_path, command, lock)
    assert time.monotonic() - started < DEADLINE
    refused(
        completed,
        f"the lock directory {sticky} can be written by other accounts (mode 1777), sticky",
        "set DGPROV_LOCK_FILE to a file in a directory only this account (or root) can write",
    )
    assert token_hashes(running) == {}
    assert lock.exists() == planted


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX modes")
def test_a_file_that_is_not_a_lock_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    """``DGPROV_LOCK_FILE`` pointing at another file by mistake used to truncate it to the
    holder's note. A lock's own note, 0.1.0's included, is taken over."""
    path = tmp_path / "precious.lock"
    path.write_text("root's data that is not a lock\n", "utf-8")
    path.chmod(0o600)
    refusal = f"the lock file {path} holds something other than a dgprov lock's note"
    with pytest.raises(UsageError, match=re.escape(refusal)), host_lock(path):
        pass
    assert path.read_text("utf-8") == "root's data that is not a lock\n"
    for note in (
        "\0 pid 12, user ann, started 2026-01-01T00:00:00Z",
        "\0 dgprov generate-tokens, pid 12, user ann, started 2026-01-01T00:00:00Z",
        "\0",
        "",
    ):
        path.write_text(note, "utf-8")
        with host_lock(path):
            assert f"pid {os.getpid()}, " in path.read_text("utf-8")
