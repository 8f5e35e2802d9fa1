"""``headless_browser`` as MSAL's ``BROWSER``: the real interactive flow, without a browser."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ..conftest import Running

INTERACTIVE = """
import json, sys, msal, requests
client_id, authority, ca, hint, scope = sys.argv[1:6]
session = requests.Session(); session.trust_env = False; session.verify = ca
app = msal.PublicClientApplication(client_id, authority=authority, instance_discovery=False,
                                   http_client=session)
result = app.acquire_token_interactive([scope], timeout=60, login_hint=hint or None)
claims = result.get("id_token_claims", {})
print(json.dumps({"upn": claims.get("preferred_username"), "error": result.get("error"),
                  "nonce": bool(claims.get("nonce")), "token": "access_token" in result,
                  "scope": sorted(result.get("scope", "").split())}))
"""


@pytest.mark.parametrize(("hint_index", "broker"), [(None, False), (3, False), (None, True)])
def test_interactive_flow_with_a_headless_browser(
    entra: Running, hint_index: int | None, broker: bool
) -> None:
    """MSAL's own loopback server, form_post and PKCE, with BROWSER as the browser; also for
    the broker's scope, as ``fetch-config --source broker`` signs in."""
    info = entra.info
    scope = info["broker_scope"] if broker else "User.Read"
    assert entra.sandbox.entra is not None
    entra.sandbox.entra.auto_approve_upn = info["user_upns"][0]
    hint = info["user_upns"][hint_index] if hint_index is not None else ""
    browser = f"{sys.executable} -m dgprov_sandbox.headless_browser --cafile {info['ca_bundle']} %s"
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            INTERACTIVE,
            info["client_id"],
            info["authority_url"],
            info["ca_bundle"],
            hint,
            scope,
        ],
        env={**os.environ, "BROWSER": browser},
        capture_output=True,
        text=True,
        timeout=90,
    )
    outcome = json.loads(completed.stdout.strip().splitlines()[-1])
    assert outcome == {
        "upn": hint or info["user_upns"][0],
        "error": None,
        "nonce": True,
        "token": True,
        "scope": sorted([scope, "offline_access", "openid", "profile"]),
    }
