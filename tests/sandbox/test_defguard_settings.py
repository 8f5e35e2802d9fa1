"""``GET /api/v1/settings``: 2.0 serializes its enrollment settings with the rest of the record
(v2.0.1 crates/defguard_common/src/db/models/settings.rs:246,255), 1.6 keeps them in its
configuration (v1.6.6 crates/defguard_common/src/config.rs:106-111) and shows neither."""

from __future__ import annotations

from ..conftest import StartSandbox, example_tenant


def test_the_settings_show_the_enrollment_lifetime_and_proxy_url_on_2_0_only(
    start_sandbox: StartSandbox, line: str
) -> None:
    tenant = example_tenant()
    tenant["settings"]["enrollment_token_timeout_hours"] = 36
    sandbox = start_sandbox(tenant, line=line)
    response = sandbox.core.get("/api/v1/settings")
    assert response.status_code == 200
    settings = response.json()
    if line == "2.0":
        assert settings["enrollment_token_timeout_hours"] == 36
        assert settings["public_proxy_url"] == sandbox.info["proxy_url"]
    else:
        assert "enrollment_token_timeout_hours" not in settings
        assert "public_proxy_url" not in settings
    assert sandbox.anonymous.get("/api/v1/settings").status_code == 401  # AdminRole
