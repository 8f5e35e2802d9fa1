"""Whether the broker's client id can be the audience of the tokens users send it.

The broker accepts tokens whose ``aud`` is its ``--client-id`` (or ``api://`` that id), so that
id must be the broker's own registration, the one exposing ``api://<id>/Provision``. Two
mistakes start a broker that no user can ever use, or that serves the wrong app: the public
client's id pasted twice (it is ``DGPROV_CLIENT_ID`` on the same machines, and it is what
``--allowed-client-id`` names), and the id of a Microsoft first-party public client copied
from a PowerShell or CLI session. Neither exposes the broker's scope. The broker starts all
the same (its process is fine) but ``/readyz`` says why it is not ready, so an orchestrator
never routes users to it; the words name no id or host, since anyone may probe.
"""

from __future__ import annotations

from collections.abc import Iterable

from .config import GUID

# Microsoft's first-party apps whose ids are seen in admins' sessions (none is a broker).
FIRST_PARTY_APPS = {
    "14d82eec-204b-4c2f-b7e8-296a70dab67e": "Microsoft Graph Command Line Tools",
    "04b07795-8ddb-461a-bbee-02f9e1bf7b46": "Azure CLI",
    "1950a258-227b-4e31-a9cf-717495945fc2": "Azure PowerShell",
    "d3590ed6-52b3-4102-aeff-aad2292ab01c": "Microsoft Office",
    "1fec8e78-bce4-4aaf-ab1b-5451cc387264": "Microsoft Teams",
    "872cd9fa-d31f-45e0-9eab-6e460a02d1f1": "Visual Studio",
    "aebc6443-996d-45c2-90f0-388ff96faa56": "Visual Studio Code",
    "00000003-0000-0000-c000-000000000000": "Microsoft Graph",
}
OWN_REGISTRATION = "give --client-id the broker's own app registration, the one exposing its scope"


def audience_problem(client_id: str, allowed_client_ids: Iterable[str]) -> str | None:
    """None when ``client_id`` can be the broker's audience; else why it cannot, and the fix."""
    normalized = client_id.strip().lower()
    if not normalized:
        return f"the broker has no client id, so no scope is exposed; {OWN_REGISTRATION}"
    if not GUID.fullmatch(normalized):
        return f"the broker's client id is not an application (client) id; {OWN_REGISTRATION}"
    if normalized in {allowed.strip().lower() for allowed in allowed_client_ids}:
        return (
            "the broker's client id is the public client's (an --allowed-client-id), which "
            f"exposes no broker scope; {OWN_REGISTRATION}"
        )
    name = FIRST_PARTY_APPS.get(normalized)
    if name is not None:
        return f"the broker's client id is {name}'s, a Microsoft app; {OWN_REGISTRATION}"
    return None
