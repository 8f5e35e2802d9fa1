"""One error style through the real CLI: ``dgprov <command>: error: …``, exit 2, no traceback.

An administrator meets these on the first day: a CA bundle that is not PEM, a directory given
where a file belongs, an option mistyped. Each must be one line naming the problem and the fix.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from dgprov.cli import main
from dgprov.retry import transport_problem

from ..conftest import Running, StartSandbox
from .test_enroll import provisioning_file, tenant
from .test_fetch_config import fetch
from .test_generate_tokens import cli_args, environment


def assert_one_error_line(result: Result, command: str, *expected: str) -> str:
    """Exit 2 through dgprov's handler (not a crash), one line in dgprov's style; the line."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # handled, no traceback
    assert "Traceback" not in result.output and "Usage:" not in result.output
    (line,) = [shown for shown in result.output.splitlines() if "error:" in shown]
    assert line.startswith(f"dgprov {command}: error: "), line
    for words in expected:
        assert words in line, line
    return line


@pytest.fixture
def not_pem(tmp_path: Path) -> Path:
    path = tmp_path / "corp-ca.crt"
    path.write_bytes(b"\x30\x82\x03\x0a this is DER, or anything that is not PEM\n")
    return path


def test_a_ca_bundle_that_is_not_pem_is_named_by_generate_tokens(
    start_sandbox: StartSandbox, tmp_path: Path, not_pem: Path
) -> None:
    running = start_sandbox()
    result = CliRunner().invoke(
        main,
        cli_args(running, "--ca-bundle", str(not_pem)),
        env=environment(running, tmp_path / "cache"),
    )
    assert_one_error_line(result, "generate-tokens", f"--ca-bundle {not_pem}", "not a PEM")
    assert running.tokens("user0001") == []


def test_a_ca_bundle_that_is_not_pem_is_named_by_enroll(
    start_sandbox: StartSandbox, tmp_path: Path, not_pem: Path
) -> None:
    running: Running = start_sandbox(tenant())
    provisioning_file(tmp_path, running, running.issue("jdoe"))
    result = CliRunner().invoke(
        main,
        [
            "enroll", "--provisioning-file", str(tmp_path / "provisioning.json"),
            "--output-dir", str(tmp_path / "wg"), "--ca-bundle", str(not_pem),
        ],
    )  # fmt: skip
    assert_one_error_line(result, "enroll", f"--ca-bundle {not_pem}", "not a PEM")
    assert (tmp_path / "provisioning.json").exists() and not (tmp_path / "wg").exists()


def test_a_ca_bundle_that_is_not_pem_is_the_cause_fetch_config_names(
    start_sandbox: StartSandbox, tmp_path: Path, not_pem: Path
) -> None:
    running = start_sandbox()
    result = fetch(
        running, tmp_path, running.info["user_upns"][0], "--ca-bundle", str(not_pem),
        "--output", str(tmp_path / "provisioning.json"),
    )  # fmt: skip
    line = assert_one_error_line(result, "fetch-config", f"--ca-bundle {not_pem}", "not a PEM")
    assert "cannot reach" not in line
    assert not (tmp_path / "provisioning.json").exists()


def test_a_missing_ca_bundle_is_named(start_sandbox: StartSandbox, tmp_path: Path) -> None:
    running = start_sandbox()
    missing = tmp_path / "nowhere.pem"
    result = CliRunner().invoke(
        main,
        cli_args(running, "--ca-bundle", str(missing)),
        env=environment(running, tmp_path / "cache"),
    )
    assert_one_error_line(result, "generate-tokens", "'--ca-bundle'", f"{missing}' does not exist")


@pytest.mark.parametrize(
    ("arguments", "command", "expected"),
    [
        (["generate-tokens", "--report", "{tmp}"], "generate-tokens", "is a directory"),
        (["sync", "--no-such-option"], "sync", "No such option"),
        (["fetch-config", "--source", "nowhere"], "fetch-config", "'nowhere' is not one of"),
    ],
)
def test_click_usage_errors_speak_in_dgprov_style(
    tmp_path: Path, arguments: list[str], command: str, expected: str
) -> None:
    args = [word.replace("{tmp}", str(tmp_path)) for word in arguments]
    line = assert_one_error_line(CliRunner().invoke(main, args), command, expected)
    assert line.endswith(f"see dgprov {command} --help")


def test_an_unknown_command_is_named_by_dgprov_itself() -> None:
    result = CliRunner().invoke(main, ["generate-token"])
    assert result.exit_code == 2
    assert result.output.startswith("dgprov: error: No such command 'generate-token'")


def test_a_closed_port_is_told_apart_from_a_name_that_does_not_resolve(tmp_path: Path) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    port = closed.getsockname()[1]
    try:
        result = CliRunner().invoke(
            main,
            [
                "generate-tokens", "--url", f"http://127.0.0.1:{port}", "--group-name", "vpn",
                "--tenant", "t", "--client-id", "c", "--yes",
            ],
            env={"DEFGUARD_API_TOKEN": "dg-" + "a" * 32, "DGPROV_CACHE_DIR": str(tmp_path)},
        )  # fmt: skip
    finally:
        closed.close()
    assert_one_error_line(
        result, "generate-tokens", f"nothing accepts connections on 127.0.0.1 port {port}"
    )


def test_the_transport_problem_names_dns_refusal_and_trust() -> None:
    """The unit behind the line above, for the causes a test cannot stage offline."""
    request = httpx.Request("GET", "https://defguard.contoso.example/api/v1/info")

    def failure(cause: BaseException) -> httpx.ConnectError:
        try:
            raise httpx.ConnectError(str(cause), request=request) from cause
        except httpx.ConnectError as exc:
            return exc

    unresolved = failure(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    assert transport_problem(unresolved, "/api/v1/info") == (
        "the name defguard.contoso.example does not resolve"
    )
    refused = failure(ConnectionRefusedError(111, "Connection refused"))
    assert transport_problem(refused, "/api/v1/info") == (
        "nothing accepts connections on defguard.contoso.example port 443"
    )
    untrusted = ssl.SSLCertVerificationError(1, "certificate verify failed")
    untrusted.verify_message = "unable to get local issuer certificate"
    assert transport_problem(failure(untrusted), "/api/v1/info") == (
        "defguard.contoso.example's certificate is not trusted (unable to get local issuer "
        "certificate); see --ca-bundle"
    )
    assert transport_problem(failure(OSError("other")), "/x") == "ConnectError"


@pytest.mark.parametrize("command", ["generate-tokens", "sync"])
def test_the_enrollment_proxy_given_as_url_is_a_preflight_error(
    start_sandbox: StartSandbox, tmp_path: Path, command: str
) -> None:
    running = start_sandbox()
    args = cli_args(running, "--url", running.info["proxy_url"])
    args[0] = command
    if command == "sync":
        args += ["--state", str(tmp_path / "state.json")]
    result = CliRunner().invoke(main, args, env=environment(running, tmp_path / "cache"))
    assert_one_error_line(result, command, "answered 404", "not Defguard core's address")
    assert running.tokens("user0001") == []


@pytest.mark.parametrize("suffix", ["/api/v1", "/api/v1/", "/api/v1/group-info"])
def test_a_url_ending_in_the_api_path_names_the_base_url(
    start_sandbox: StartSandbox, tmp_path: Path, suffix: str
) -> None:
    running = start_sandbox()
    base = running.info["defguard_url"]
    result = CliRunner().invoke(
        main, cli_args(running, "--url", base + suffix), env=environment(running, tmp_path / "c")
    )
    assert_one_error_line(result, "generate-tokens", f"without /api/v1, such as {base}")


def test_every_missing_setting_is_named_in_one_run(tmp_path: Path) -> None:
    """A new unit file without tenant, client id or API token: one run names all three."""
    result = CliRunner().invoke(
        main,
        ["sync", "--url", "https://defguard.contoso.example", "--group-name", "vpn-users"],
        env={"DGPROV_CACHE_DIR": str(tmp_path), "DEFGUARD_API_TOKEN": "", "DGPROV_TENANT": "",
             "DGPROV_CLIENT_ID": ""},
    )  # fmt: skip
    line = assert_one_error_line(
        result, "sync", "no Entra tenant (--tenant or DGPROV_TENANT)",
        "no client id (--client-id or DGPROV_CLIENT_ID)",
        "no Defguard API token (DEFGUARD_API_TOKEN or --api-token-file)",
    )  # fmt: skip
    assert len(line) <= 200


def test_a_refused_token_from_a_file_names_that_file(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = start_sandbox()
    token_file = tmp_path / "defguard-api-token"
    token_file.write_text("dg-" + "x" * 32 + "\n")  # well formed, but no such token
    args = cli_args(running, "--api-token-file", str(token_file))
    env = environment(running, tmp_path / "cache")
    env["DEFGUARD_API_TOKEN"] = ""  # the file is the only source
    result = CliRunner().invoke(main, args, env=env)
    line = assert_one_error_line(result, "generate-tokens", "refused the API token")
    assert f"put it in --api-token-file {token_file}" in line
    assert "DEFGUARD_API_TOKEN" not in line


def test_https_to_a_plain_http_server_says_so(start_sandbox: StartSandbox, tmp_path: Path) -> None:
    running = start_sandbox()
    plain = running.info["defguard_url"]  # the sandbox's core speaks plain http
    result = CliRunner().invoke(
        main,
        cli_args(running, "--url", plain.replace("http://", "https://")),
        env=environment(running, tmp_path / "cache"),
    )
    port = plain.rsplit(":", 1)[1]
    assert_one_error_line(result, "generate-tokens", f"port {port} does not answer in TLS")


def test_a_suggested_option_reads_as_a_sentence() -> None:
    line = assert_one_error_line(
        CliRunner().invoke(main, ["sync", "--group-nam", "x"]), "sync", "Did you mean"
    )
    assert "?; " not in line and line.endswith("? see dgprov sync --help")
