"""``--state FILE``: what ``sync`` wrote where, for an Entra attribute set without
``EnrollmentTokenExpiresAt`` (or wherever an administrator prefers a local record).

Per directory object: the first 128 bits of the SHA-256 of the token sync stored there (never the
token, hex in ``token_sha256_128``), its expiry
and the member it was for. The digest is what proves that the directory still holds the value
sync wrote: a value another tool wrote since has another digest and is treated as unknown. The
file is created 0600 (it names people) and replaced atomically, so an interrupted run leaves the
previous version.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .directory import Stored
from .errors import UsageError
from .private_files import write_private_file
from .report import ReportFile, check_destination

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


@dataclass
class SyncState:
    path: Path
    entries: dict[str, Entry] = field(default_factory=dict)  # by lower-cased object id

    @classmethod
    def load(cls, path: Path) -> SyncState:
        """The file's entries; a file that does not exist yet is an empty state. Its place is
        proved writable first (as the report's is), so a run never ends unable to record what
        it stored."""
        if path.suffix.lower() != ".json":
            raise UsageError(f"--state {path}: the file name must end in .json")
        check_destination(ReportFile(path, "--state"), overwrite=True)
        if not path.exists():
            return cls(path)
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
            values = [item.get(k) if isinstance(item, dict) else None for k in _KEYS]
            texts = [v for v in values if isinstance(v, str) and 0 < len(v) <= MAX_FIELD]
            if len(texts) != len(_KEYS):
                raise UsageError(f"{problem} (an object entry is malformed); name another file")
            entry = Entry(*texts)
            state.entries[entry.object_id.lower()] = entry
        return state

    def vouch(self, held: Mapping[str, Stored]) -> dict[str, Stored]:
        """``held`` with the expiry this file records where the directory still holds the very
        token sync wrote; any other value counts as not written by sync (expiry None)."""
        vouched: dict[str, Stored] = {}
        for key, stored in held.items():
            entry = self.entries.get(key)
            same = entry is not None and entry.digest == stored.digest.hex()
            expiry = entry.expires_at if entry is not None and same else None
            vouched[key] = Stored(stored.object_id, stored.upn, stored.digest, expiry)
        return vouched

    def record(self, object_id: str, digest: bytes, expires_at: str, username: str) -> None:
        self.entries[object_id.lower()] = Entry(object_id, digest.hex(), expires_at, username)

    def forget(self, object_id: str) -> None:
        self.entries.pop(object_id.lower(), None)

    def save(self) -> None:
        def chunks() -> Iterator[str]:
            yield json.dumps({"format": FORMAT, "version": VERSION})[:-1] + ', "objects": ['
            for index, entry in enumerate(self.entries.values()):
                body = dict(
                    zip(
                        _KEYS,
                        (entry.object_id, entry.digest, entry.expires_at, entry.username),
                        strict=True,
                    )
                )
                yield ("," if index else "") + "\n  " + json.dumps(body, ensure_ascii=False)
            yield "\n]}\n"

        write_private_file(self.path, chunks())


_KEYS = ("object_id", "token_sha256_128", "expires_at", "username")
