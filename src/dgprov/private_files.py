"""Files that may hold secrets or personal data: created readable by their owner only.

Reports, ``provisioning.json``, WireGuard configurations, the enrollment state and the fallback
sign-in cache all go through here, so that the rule (0600 from the first byte, replaced
atomically, never half-written) lives in one place.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def write_private_file(path: Path, data: bytes | Iterable[str]) -> None:
    """Atomically replace ``path`` with ``data``, readable by its owner only (0600).

    The file is created 0600 before anything is written, so no secret is ever readable by
    others, not even while it is being written; a failure leaves the old file as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.chmod(temporary, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            if isinstance(data, bytes):
                handle.write(data)
            else:
                for chunk in data:
                    handle.write(chunk.encode())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
