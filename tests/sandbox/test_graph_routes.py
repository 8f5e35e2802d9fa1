"""Authentication and routing of Graph requests on the emulator (``graph_routes``)."""

from __future__ import annotations

import pytest
from dgprov_sandbox.graph_routes import route_template

from ..conftest import Running, graph_client, sign_in


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/", "/"),
        ("/me", "/me"),
        ("/users", "/users"),
        ("/users/3f2a", "/users/{id}"),
        ("/users/jdoe@contoso.example", "/users/{id}"),
        ("/groups/3f2a/members/microsoft.graph.user", "/groups/{id}/members/microsoft.graph.user"),
        ("/directory/attributeSets/Defguard", "/directory/attributeSets/{id}"),
        (
            "/directory/customSecurityAttributeDefinitions/Defguard_EnrollmentUrl",
            "/directory/customSecurityAttributeDefinitions/{id}",
        ),
        ("/$batch", "/$batch"),
    ],
)
def test_route_template(path: str, template: str) -> None:
    """The key of request counters and throttling costs names ids, never their values."""
    assert route_template(path) == template


def test_missing_expired_and_foreign_tokens(tenant: Running) -> None:
    anonymous = graph_client(tenant.info, None)
    response = anonymous.get("/me")
    assert response.status_code == 401
    assert response.json()["error"] == {
        **response.json()["error"],
        "code": "InvalidAuthenticationToken",
        "message": "Access token is empty.",
    }
    assert tenant.sandbox.entra is not None
    foreign = tenant.sandbox.entra.signer.sign(
        {"aud": "api://other", "tid": tenant.info["tenant_id"], "exp": 2**40}
    )
    wrong = graph_client(tenant.info, foreign).get("/me")
    assert wrong.status_code == 401 and "Invalid audience" in wrong.json()["error"]["message"]
    token = sign_in(tenant, tenant.info["admin_upn"])
    tenant.advance_clock(2 * 3600)
    expired = graph_client(tenant.info, token).get("/me")
    assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]
