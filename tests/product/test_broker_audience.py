"""``broker.audience.audience_problem``: which client ids can never be the broker's audience
(pure; the broker's /readyz that says it is in test_broker_configuration.py)."""

from __future__ import annotations

import pytest

from dgprov.broker.audience import audience_problem

PUBLIC = "c0000000-0000-4000-8000-000000000002"
BROKER = "c0000000-0000-4000-8000-000000000003"


@pytest.mark.parametrize(
    ("client_id", "allowed", "words"),
    [
        ("", (), "no scope is exposed"),
        ("   ", (PUBLIC,), "no scope is exposed"),
        (f"api://{BROKER}", (), "not an application (client) id"),
        (PUBLIC, (PUBLIC,), "the public client's (an --allowed-client-id)"),
        (PUBLIC.upper(), (f" {PUBLIC} ",), "the public client's"),
        ("14D82EEC-204B-4C2F-B7E8-296A70DAB67E", (), "Microsoft Graph Command Line Tools's"),
        ("04b07795-8ddb-461a-bbee-02f9e1bf7b46", (PUBLIC,), "Azure CLI's"),
        ("00000003-0000-0000-c000-000000000000", (), "Microsoft Graph's"),
    ],
)
def test_an_audience_that_cannot_be_right(
    client_id: str, allowed: tuple[str, ...], words: str
) -> None:
    problem = audience_problem(client_id, allowed)
    assert problem is not None and words in problem
    assert problem.endswith(
        "give --client-id the broker's own app registration, the one exposing its scope"
    )
    assert client_id.strip().lower() not in problem.lower() or not client_id.strip()


@pytest.mark.parametrize(
    "allowed", [(), (PUBLIC,), (PUBLIC, "c0000000-0000-4000-8000-000000000009")]
)
def test_the_brokers_own_registration_is_right(allowed: tuple[str, ...]) -> None:
    assert audience_problem(BROKER, allowed) is None
