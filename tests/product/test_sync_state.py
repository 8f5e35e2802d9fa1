"""``--state FILE`` (``sync_state.py``) and the host lock (``host_lock.py``), in isolation."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from dgprov.directory import Stored
from dgprov.errors import AlreadyRunning, UsageError
from dgprov.host_lock import host_lock
from dgprov.stored_value import INVALID_VALUE, REPLACED_VALUE, UNKNOWN_EXPIRY, desktop_stamp
from dgprov.sync_state import SyncState


def test_state_round_trip_is_private_and_vouches_only_for_the_same_token(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = SyncState.load(path)
    assert state.entries == {}
    state.record("OBJ-1", b"a" * 16, "2026-01-01T00:00:00Z", "ann")
    state.record("obj-2", b"b" * 16, "unknown", "bob")
    state.save()
    assert path.stat().st_mode & 0o777 == 0o600
    again = SyncState.load(path)
    held = {
        "obj-1": Stored("OBJ-1", None, b"a" * 16),
        "obj-2": Stored("obj-2", None, b"c" * 16),  # someone wrote another token since
        "obj-3": Stored("obj-3", None, b"d" * 16, "2026-01-01T00:00:00Z"),  # not in the file
    }
    vouched = again.vouch(held)
    assert vouched["obj-1"].expires_at == "2026-01-01T00:00:00Z"
    assert vouched["obj-2"].expires_at is None
    assert vouched["obj-3"].expires_at is None


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[" * 200_000,  # deeper than the JSON parser's recursion
        json.dumps([1, 2]),
        json.dumps({"format": "other", "version": 1, "objects": []}),
        json.dumps({"format": "dgprov-sync-state", "version": 9, "objects": []}),
        json.dumps({"format": "dgprov-sync-state", "version": 1, "objects": {}}),
        json.dumps({"format": "dgprov-sync-state", "version": 1, "objects": [{"object_id": 5}]}),
        json.dumps(
            {
                "format": "dgprov-sync-state",
                "version": 1,
                "objects": [
                    {
                        "object_id": "x" * 5000,
                        "token_sha256_128": "a",
                        "expires_at": "b",
                        "username": "c",
                    }
                ],
            }
        ),
    ],
)
def test_hostile_state_files_are_refused_with_one_line(tmp_path: Path, content: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(UsageError) as refused:
        SyncState.load(path)
    assert str(refused.value).startswith(f"--state {path}")
    assert "\n" not in str(refused.value)


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX ownership")
@pytest.mark.parametrize("how", ["writable by others", "another owner"])
def test_a_state_file_someone_else_could_write_is_refused(tmp_path: Path, how: str) -> None:
    """It vouches for expiries: only this account may have written it."""
    path = tmp_path / "state.json"
    SyncState(path).save()
    if how == "writable by others":
        path.chmod(0o666)
    elif os.geteuid() == 0:
        os.chown(path, 65534, 65534)
    else:
        pytest.skip("needs root to give the file to another account")
    with pytest.raises(UsageError, match="belong to this account"):
        SyncState.load(path)


def _try_lock(path: str, queue: multiprocessing.Queue[str]) -> None:
    try:
        with host_lock(Path(path)):
            queue.put("acquired")
    except AlreadyRunning as exc:
        queue.put(str(exc))


def test_a_second_process_is_refused_while_the_first_holds_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "sync.lock"
    queue: multiprocessing.Queue[str] = multiprocessing.Queue()
    with host_lock(path):
        other = multiprocessing.Process(target=_try_lock, args=(str(path), queue))
        other.start()
        message = queue.get(timeout=30)
        other.join(30)
    assert message.startswith("another dgprov sync is running on this host")
    assert f"pid {os.getpid()}" in message and str(path) in message
    after = multiprocessing.Process(target=_try_lock, args=(str(path), queue))
    after.start()
    assert queue.get(timeout=30) == "acquired"  # released when the holder ended
    after.join(30)


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX ownership")
@pytest.mark.parametrize("how", ["hard link", "another owner"])
def test_the_lock_never_writes_into_a_file_it_does_not_own_alone(tmp_path: Path, how: str) -> None:
    """A lock file someone prepared (a hard link to a file, or their own file) is never
    rewritten: the link is refused for what it holds, another account's file for its owner."""
    victim = tmp_path / "precious"
    victim.write_text("keep me", "utf-8")
    victim.chmod(0o600)
    path = tmp_path / "sync.lock"
    if how == "hard link":
        os.link(victim, path)
        with pytest.raises(UsageError, match="holds something other than"), host_lock(path):
            pass
    else:
        path.write_text("keep me", "utf-8")
        if os.geteuid() != 0:
            pytest.skip("needs root to give the file to another account")
        os.chown(path, 65534, 65534)
        victim = path
        with pytest.raises(UsageError, match="belongs to another account"), host_lock(path):
            pass
    assert victim.read_text("utf-8") == "keep me"


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("state.txt", "must end in .json"),
        ("folder.json", "is a directory"),
        ("plain/state.json", "is a file, not a directory"),
    ],
)
def test_a_state_file_that_could_not_be_written_is_refused_first(
    tmp_path: Path, name: str, problem: str
) -> None:
    (tmp_path / "folder.json").mkdir()
    (tmp_path / "plain").touch()
    with pytest.raises(UsageError) as refused:
        SyncState.load(tmp_path / name)
    assert problem in str(refused.value) and str(refused.value).startswith("--state ")


def test_the_journal_records_tokens_before_the_file_and_survives_a_kill(tmp_path: Path) -> None:
    """What a run journaled is known to the next run even though it never saved the file; a
    last line cut short (killed while writing it) is ignored, the file then replaces the
    journal."""
    path = tmp_path / "state.json"
    state = SyncState.load(path)
    state.record("obj-1", b"a" * 16, "2026-01-01T00:00:00Z", "ann")
    state.save()
    run = SyncState.load(path)
    entry = run.record("obj-1", b"b" * 16, "2026-01-02T00:00:00Z", "ann", replaced=b"a" * 16)
    run.append([entry, run.record("obj-2", b"c" * 16, "2026-01-02T00:00:00Z", "bob")])
    journal = tmp_path / "state.json.journal"
    assert journal.stat().st_mode & 0o777 == 0o600
    with journal.open("a") as torn:
        torn.write('{"object_id": "obj-3", "token_sha')  # the killed run's last write
    # The run is killed here: nothing saved.
    after = SyncState.load(path)
    held = {
        "obj-1": Stored("obj-1", None, b"b" * 16),
        "obj-2": Stored("obj-2", None, b"a" * 16),  # its write never happened: something else
    }
    vouched = after.vouch(held)
    assert vouched["obj-1"].expires_at == "2026-01-02T00:00:00Z"
    assert vouched["obj-2"].expires_at is None and vouched["obj-2"].unrecorded
    assert after.unsaved
    after.save()
    assert not journal.exists()
    assert SyncState.load(path).entries == after.entries


def test_a_value_a_recorded_token_replaced_is_dead_and_an_unknown_one_unrecorded(
    tmp_path: Path,
) -> None:
    state = SyncState(tmp_path / "state.json")
    state.record("obj-1", b"b" * 16, "2026-01-02T00:00:00Z", "ann", replaced=b"a" * 16)
    state.record("obj-2", b"c" * 16, UNKNOWN_EXPIRY, "bob")
    held = {
        "obj-1": Stored("obj-1", None, b"a" * 16),  # the write of b never happened
        "obj-2": Stored("obj-2", None, b"c" * 16),
        "obj-3": Stored("obj-3", None, b"d" * 16, INVALID_VALUE),
    }
    vouched = state.vouch(held, "2026-01-01T00:00:00Z")
    assert vouched["obj-1"].expires_at == REPLACED_VALUE and not vouched["obj-1"].unrecorded
    # An earlier version's "unknown": aged from now on, which the file keeps.
    assert vouched["obj-2"].expires_at == desktop_stamp("2026-01-01T00:00:00Z")
    assert state.vouch(held, "2026-02-01T00:00:00Z")["obj-2"] == vouched["obj-2"]
    assert vouched["obj-3"].expires_at == INVALID_VALUE  # the client would refuse it anyway


@pytest.mark.parametrize(
    "content", ['{"object_id": 5}\n', "not json\n", '{"object_id": "a"}\n{"x": 1}\n']
)
def test_a_hostile_journal_is_refused_with_one_line(tmp_path: Path, content: str) -> None:
    path = tmp_path / "state.json"
    (tmp_path / "state.json.journal").write_text(content)
    with pytest.raises(UsageError) as refused:
        SyncState.load(path)
    assert str(refused.value).startswith(f"--state {path}.journal") and "remove it" in str(
        refused.value
    )


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX links and modes")
def test_a_journal_that_is_a_link_or_writable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    journal = tmp_path / "state.json.journal"
    (tmp_path / "elsewhere").write_text("")
    journal.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UsageError, match="not a regular file"):
        SyncState.load(path)
    state = SyncState(path)
    with pytest.raises(UsageError, match="cannot write the journal"):
        state.append([state.record("obj-1", b"a" * 16, "x", "ann")])
    journal.unlink()
    journal.write_text("")
    journal.chmod(0o666)
    with pytest.raises(UsageError, match="belong to this account"):
        SyncState.load(path)


@pytest.mark.parametrize(
    "fragment",
    [
        b'{"object_id": "obj-2", "token_sha',
        '{"object_id": "obj-2", "username": "Zoë'.encode()[:-1],  # cut inside a character
    ],
)
def test_a_line_cut_short_is_cut_off_so_later_runs_still_read_the_journal(
    tmp_path: Path, fragment: bytes
) -> None:
    """Run 1 is killed while writing a line; run 2 appends and is killed too; run 3 must still
    read every whole line (appended after the fragment, run 2's first line was unreadable and
    every later run refused the journal)."""
    path = tmp_path / "state.json"
    first = SyncState(path)
    first.append([first.record("obj-1", b"a" * 16, "2026-01-01T00:00:00Z", "ann")])
    first.close()
    journal = tmp_path / "state.json.journal"
    with journal.open("ab") as torn:
        torn.write(fragment)  # run 1 killed mid-line
    second = SyncState.load(path)
    assert set(second.entries) == {"obj-1"}
    assert journal.read_bytes().endswith(b"\n")  # repaired on replay, before any append
    entry = second.record("obj-3", b"b" * 16, "2026-01-02T00:00:00Z", "lee", replaced=b"c" * 16)
    second.append([entry])
    second.close()  # run 2 killed before it saved
    third = SyncState.load(path)
    assert set(third.entries) == {"obj-1", "obj-3"}
    assert third.entries["obj-3"].replaced == (b"c" * 16).hex()  # its 'replaced' record kept
    held = {"obj-1": Stored("obj-1", None, b"a" * 16), "obj-3": Stored("obj-3", None, b"c" * 16)}
    vouched = third.vouch(held)
    assert vouched["obj-1"].expires_at == "2026-01-01T00:00:00Z"
    assert vouched["obj-3"].expires_at == REPLACED_VALUE


@pytest.mark.skipif(not hasattr(os, "link"), reason="hard links")
def test_a_journal_with_another_name_is_refused_and_never_appended_to(tmp_path: Path) -> None:
    """A hard link to another 0600 file of this account: replayed, its lines would be trusted;
    appended to, the other file would be written."""
    path = tmp_path / "state.json"
    other = tmp_path / "other.txt"
    line = {"object_id": "obj-1", "token_sha256_128": "a" * 32, "expires_at": "x", "username": "u"}
    other.write_text(json.dumps(line) + "\n")
    other.chmod(0o600)
    journal = tmp_path / "state.json.journal"
    os.link(other, journal)
    with pytest.raises(UsageError, match=f"{journal}: not a dgprov sync journal .*hard links"):
        SyncState.load(path)
    state = SyncState(path)
    with pytest.raises(UsageError, match=r"cannot write the journal .*hard links"):
        state.append([state.record("obj-9", b"b" * 16, "x", "lee")])
    assert other.read_text() == json.dumps(line) + "\n"
