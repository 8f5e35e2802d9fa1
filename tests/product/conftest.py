"""Every product test gets a lock file of its own: ``generate-tokens`` and ``sync`` take the
account's lock (``host_lock.py``), and tests run beside each other (and beside a real job on a
developer's host) must neither refuse each other nor take that host's lock."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _own_lock_file(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DGPROV_LOCK_FILE", str(tmp_path_factory.mktemp("lock") / "dgprov.lock"))
