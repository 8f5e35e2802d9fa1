"""``--state FILE``: what ``sync`` wrote where, for an Entra attribute set without
``EnrollmentTokenExpiresAt`` (or wherever an administrator prefers a local record).

Per directory object: the first 128 bits of the SHA-256 of the token sync stored there (never the
token, hex in ``token_sha256_128``), its expiry
and the member it was for. The digest is what proves that the directory still holds the value
sync wrote: a value another tool wrote since has another digest. The file is created 0600 (it
names people) and replaced atomically, so an interrupted run leaves the previous version.

A run can be stopped at any moment, SIGKILL and power loss included. So each token is written
to a journal beside the file (``FILE.json.journal``, 0600, appended and flushed to disk) before
the directory receives it; the next run replays the journal, and a run that ends normally folds
it into the file and removes it. A token issued replaces the member's previous one in Defguard,
so its entry also names the digest it ``replaced``: a directory still holding that one holds a
dead token. A value whose digest the state does not know at all was not proved dead either:
it is kept (``Stored.unrecorded``), never renewed on that ground alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import stat
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .directory import Stored
from .errors import UsageError
from .private_files import write_private_file
from .report import ReportFile, check_destination
from .stored_value import INVALID_VALUE, REPLACED_VALUE, UNKNOWN_EXPIRY, desktop_stamp

FORMAT = "dgprov-sync-state"
VERSION = 1
MAX_BYTES = 64 * 2**20  # 100,000 objects take about 20 MiB
MAX_FIELD = 4096


def _check_owner(path: Path, status: os.stat_result) -> None:
    """The file vouches for expiries, so only this account may have written it: an expiry
    someone else put there would keep (or renew) tokens on their say."""
    if not hasattr(os, "geteuid"):
        return  # Windows: the file is created in the account's own folder, with its ACL
    if status.st_uid != os.geteuid() or status.st_mode & 0o022:
        raise UsageError(
            f"--state {path}: the file must belong to this account and be writable by it alone "
            "(it is created 0600); fix its owner and mode, or name another file"
        )


@dataclass(frozen=True, slots=True)
class Entry:
    object_id: str
    digest: str
    expires_at: str
    username: str
    replaced: str = ""  # the digest of the token this one replaced in Defguard, if any
    seen_at: str = ""  # an ``unknown`` expiry: when a run first saw it (its age from then)

    def document(self) -> dict[str, str]:
        values = (self.object_id, self.digest, self.expires_at, self.username)
        body = dict(zip(_KEYS, values, strict=True))
        extra = (self.replaced, self.seen_at)
        body.update({k: v for k, v in zip(_OPTIONAL, extra, strict=True) if v})
        return body


def _entry(item: Any) -> Entry | None:
    """An entry of the file or the journal, or None if malformed."""
    if not isinstance(item, dict):
        return None
    values = [item.get(k) for k in _KEYS]
    texts = [v for v in values if isinstance(v, str) and 0 < len(v) <= MAX_FIELD]
    extra = [item.get(k, "") for k in _OPTIONAL]
    if len(texts) != len(_KEYS) or not all(
        isinstance(v, str) and len(v) <= MAX_FIELD for v in extra
    ):
        return None
    return Entry(*texts, *extra)


@dataclass
class SyncState:
    path: Path
    entries: dict[str, Entry] = field(default_factory=dict)  # by lower-cased object id
    # Changed on loading (a journal replayed, an age started): the file is to be rewritten.
    unsaved: bool = False
    _journal: int | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def journal_path(self) -> Path:
        return self.path.with_name(self.path.name + ".journal")

    @classmethod
    def load(cls, path: Path) -> SyncState:
        """The file's entries; a file that does not exist yet is an empty state. Its place is
        proved writable first (as the report's is), so a run never ends unable to record what
        it stored."""
        if path.suffix.lower() != ".json":
            raise UsageError(f"--state {path}: the file name must end in .json")
        check_destination(ReportFile(path, "--state"), overwrite=True)
        state = cls._load_file(path) if path.exists() else cls(path)
        state._replay()
        return state

    @classmethod
    def _load_file(cls, path: Path) -> SyncState:
        problem = f"--state {path}: not a dgprov sync state file"
        try:
            status = path.lstat()
            if status.st_size > MAX_BYTES:
                raise UsageError(f"{problem} (larger than {MAX_BYTES // 2**20} MiB)")
            _check_owner(path, status)
            document = json.loads(path.read_text("utf-8"))
        except OSError as exc:
            raise UsageError(f"--state {path}: cannot read it ({exc.strerror})") from None
        except (ValueError, RecursionError):
            raise UsageError(f"{problem} (not JSON); name another file") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise UsageError(f"{problem}; name another file")
        if document.get("version") != VERSION:
            raise UsageError(f"{problem} of version {VERSION}; name another file")
        objects = document.get("objects")
        if not isinstance(objects, list):
            raise UsageError(f"{problem} ('objects' is not a list); name another file")
        state = cls(path)
        for item in objects:
            entry = _entry(item)
            if entry is None:
                raise UsageError(f"{problem} (an object entry is malformed); name another file")
            state.entries[entry.object_id.lower()] = entry
        return state

    def _replay(self) -> None:
        """Apply the journal a stopped run left, line by line. A last line cut short (the run
        was killed while writing it; its token was never sent) is ignored and cut off the file,
        so that this run's lines start on a line of their own: appended after the fragment, the
        first of them would be unreadable to every later run."""
        journal = self.journal_path
        problem = f"--state {journal}: not a dgprov sync journal"
        try:
            descriptor = os.open(journal, os.O_RDWR | _OPEN_FLAGS, 0)
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EMLINK, errno.ENXIO):  # a link, a FIFO
                raise UsageError(f"{problem} (not a regular file); remove it") from None
            raise UsageError(f"--state {journal}: cannot read it ({exc.strerror})") from None
        try:
            status = os.fstat(descriptor)
            if not stat.S_ISREG(status.st_mode):
                raise UsageError(f"{problem} (not a regular file); remove it")
            if status.st_nlink > 1:
                raise UsageError(f"{problem} (it has other names, hard links); remove it")
            if status.st_size > MAX_BYTES:
                raise UsageError(f"{problem} (larger than {MAX_BYTES // 2**20} MiB); remove it")
            _check_owner(journal, status)
            data = _read_all(descriptor, status.st_size)
            *lines, torn = data.split(b"\n")
            for line in lines:
                entry = _journal_entry(line)
                if entry is None:
                    raise UsageError(f"{problem} (a line is malformed); remove it")
                self.entries[entry.object_id.lower()] = entry
            if torn:
                os.ftruncate(descriptor, len(data) - len(torn))
                os.fsync(descriptor)
        except OSError as exc:
            raise UsageError(f"--state {journal}: cannot repair it ({exc.strerror})") from None
        finally:
            os.close(descriptor)
        self.unsaved = True

    def vouch(self, held: Mapping[str, Stored], now: str | None = None) -> dict[str, Stored]:
        """``held`` with the expiry this file records where the directory still holds the very
        token sync wrote. A value that a recorded token replaced reads as ``REPLACED_VALUE``
        (dead in Defguard); any other value as not written by sync (expiry None) and
        ``unrecorded``. A value the client would refuse stays ``INVALID_VALUE``. With ``now``,
        an ``unknown`` expiry reads as a desktop token issued when a run first saw it."""
        vouched: dict[str, Stored] = {}
        for key, stored in held.items():
            entry = self.entries.get(key)
            digest = stored.digest.hex()
            expiry: str | None = None
            if entry is not None and entry.digest == digest:
                expiry = entry.expires_at
                if expiry == UNKNOWN_EXPIRY and now is not None:
                    if not entry.seen_at:
                        self.entries[key] = entry = dataclasses.replace(entry, seen_at=now)
                        self.unsaved = True  # a change to save
                    expiry = desktop_stamp(entry.seen_at)
            elif entry is not None and entry.replaced == digest:
                expiry = REPLACED_VALUE
            if stored.expires_at == INVALID_VALUE:
                expiry = INVALID_VALUE
            vouched[key] = dataclasses.replace(stored, expires_at=expiry, unrecorded=expiry is None)
        return vouched

    def record(
        self, object_id: str, digest: bytes, expires_at: str, username: str, replaced: bytes = b""
    ) -> Entry:
        entry = Entry(object_id, digest.hex(), expires_at, username, replaced.hex())
        self.entries[object_id.lower()] = entry
        return entry

    def forget(self, object_id: str) -> None:
        self.entries.pop(object_id.lower(), None)

    def append(self, entries: Iterable[Entry]) -> None:
        """Write ``entries`` to the journal and to the disk before returning (thread-safe: the
        writers call it from worker threads); ``UsageError`` if it cannot be written, and then
        the tokens must not be stored."""
        data = "".join(json.dumps(e.document(), ensure_ascii=False) + "\n" for e in entries)
        with self._lock:
            try:
                descriptor = self._open_journal()
                view = memoryview(data.encode("utf-8"))
                while view:
                    view = view[os.write(descriptor, view) :]
                os.fsync(descriptor)
            except OSError as exc:
                raise UsageError(
                    f"--state {self.journal_path}: cannot write the journal ({exc.strerror}); "
                    "the tokens issued were not stored, free space or fix the folder's rights"
                ) from None

    def _open_journal(self) -> int:
        if self._journal is not None:
            return self._journal
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _OPEN_FLAGS
        descriptor = os.open(self.journal_path, flags, 0o600)
        try:
            status = os.fstat(descriptor)
            if not stat.S_ISREG(status.st_mode):
                raise OSError(0, "not a regular file")
            if status.st_nlink > 1:  # appended to, it would write into another file too
                raise OSError(0, "it has other names, hard links")
            if hasattr(os, "geteuid") and (status.st_uid != os.geteuid() or status.st_mode & 0o077):
                raise OSError(0, "not this account's alone (0600)")
            if hasattr(os, "O_DIRECTORY"):  # the new name itself survives a power loss
                folder = os.open(self.journal_path.parent, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(folder)
                finally:
                    os.close(folder)
        except BaseException:
            os.close(descriptor)
            raise
        self._journal = descriptor
        return descriptor

    def save(self) -> None:
        """The file rewritten atomically with every entry, then the journal removed."""

        def chunks() -> Iterator[str]:
            yield json.dumps({"format": FORMAT, "version": VERSION})[:-1] + ', "objects": ['
            for index, entry in enumerate(self.entries.values()):
                body = json.dumps(entry.document(), ensure_ascii=False)
                yield ("," if index else "") + "\n  " + body
            yield "\n]}\n"

        write_private_file(self.path, chunks())
        self.close()
        try:
            self.journal_path.unlink(missing_ok=True)
        except OSError as exc:
            raise UsageError(
                f"--state {self.journal_path}: saved the state but cannot remove the journal "
                f"({exc.strerror}); remove it"
            ) from None
        self.unsaved = False

    def close(self) -> None:
        with self._lock:
            if self._journal is not None:
                with contextlib.suppress(OSError):
                    os.close(self._journal)
                self._journal = None


def _read_all(descriptor: int, size: int) -> bytes:
    chunks, left = [], size
    while left > 0:
        chunk = os.read(descriptor, left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _journal_entry(line: bytes) -> Entry | None:
    try:
        return _entry(json.loads(line.decode("utf-8")))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


# No link followed, no wait on a FIFO.
_OPEN_FLAGS = (
    getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
_KEYS = ("object_id", "token_sha256_128", "expires_at", "username")
_OPTIONAL = ("replaced_sha256_128", "seen_at")
