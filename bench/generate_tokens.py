"""Benchmark ``dgprov generate-tokens`` against the sandbox, next to the reference script's pattern.

Run from the repository root (``make bench`` does): ``.venv/bin/python bench/generate_tokens.py``.

Scenarios, each on a fresh sandbox process so they do not share a GIL with the code measured:

1. latency: N users, 20 ms added per request, throttling off. The baseline replays the PowerShell
   script's sequential pattern (group, then per user: GET user, POST start_enrollment, up to
   three Graph filters, one PATCH); dgprov runs as a separate process. Target: >= 20x faster.
2. throttled: N users, Graph throttling on with scaled documented limits; the lower bound is
   users / allowed writes per second. Target: within 1.15x of it, no member failing.
3. large: 100,000 users (``--large-users``), throttling off. Target: peak RSS <= 200 MB.

It prints wall time, requests per server, peak RSS and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import httpx
import msal
import requests

PYTHON = sys.executable
SCOPES = ["User.Read.All", "CustomSecAttributeAssignment.ReadWrite.All"]
CSA_TYPE = "#Microsoft.DirectoryServices.CustomSecurityAttributeValue"


@contextmanager
def sandbox(*args: str) -> Iterator[dict[str, Any]]:
    process = subprocess.Popen(
        [PYTHON, "-m", "dgprov_sandbox", "--auto-approve-as", "admin", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(300):
            raise SystemExit("the sandbox did not start")
        yield json.loads(process.stdout.readline())
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)


def request_counts(info: dict[str, Any]) -> tuple[int, int]:
    context = ssl.create_default_context(cafile=info["ca_bundle"])
    core = httpx.get(f"{info['defguard_url']}/_sandbox/requests").json()["requests"]
    graph_url = info["graph_url"].removesuffix("/v1.0") + "/_sandbox/requests"
    graph = httpx.get(graph_url, verify=context).json()["requests"]
    graph_http = sum(v for k, v in graph.items() if not k.startswith("$batch"))
    return sum(core.values()), graph_http


def graph_token(info: dict[str, Any]) -> str:
    session = requests.Session()
    session.trust_env = False
    session.verify = info["ca_bundle"]
    app = msal.PublicClientApplication(
        info["client_id"],
        authority=info["authority_url"],
        instance_discovery=False,
        http_client=session,
    )
    result = app.acquire_token_by_device_flow(app.initiate_device_flow(scopes=SCOPES))
    return str(result["access_token"])


def baseline(info: dict[str, Any]) -> float:
    """The reference script's request pattern, one user after another."""
    started = time.perf_counter()
    token = graph_token(info)
    context = ssl.create_default_context(cafile=info["ca_bundle"])
    headers = {"Authorization": f"Bearer {info['api_token']}", "User-Agent": "baseline"}
    with (
        httpx.Client(base_url=info["defguard_url"], headers=headers) as core,
        httpx.Client(
            base_url=info["graph_url"], headers={"Authorization": f"Bearer {token}"}, verify=context
        ) as graph,
    ):
        groups = core.get("/api/v1/group-info").json()
        members = next(g for g in groups if g["name"] == info["group_name"])["members"]
        for username in members:
            email = core.get(f"/api/v1/user/{username}").json()["user"]["email"]
            issued = core.post(
                f"/api/v1/user/{username}/start_enrollment", json={"email": None}
            ).json()
            found = None
            literal = "'" + email.replace("'", "''") + "'"
            for clause in (
                f"mail eq {literal}",
                f"userPrincipalName eq {literal}",
                f"otherMails/any(m:m eq {literal})",
            ):
                value = graph.get("/users", params={"$filter": clause}).json()["value"]
                if value:
                    found = value[0]["id"]
                    break
            if found:
                body = {
                    "customSecurityAttributes": {
                        "Defguard": {
                            "@odata.type": CSA_TYPE,
                            "EnrollmentUrl": issued["enrollment_url"],
                            "EnrollmentToken": issued["enrollment_token"],
                        }
                    }
                }
                graph.patch(f"/users/{quote(found)}", json=body)
    return time.perf_counter() - started


def run_dgprov(info: dict[str, Any], *extra: str) -> tuple[float, float, dict[str, Any]]:
    """Wall seconds, peak RSS in MB and the report of one ``generate-tokens`` process."""
    with tempfile.TemporaryDirectory() as directory:
        report = os.path.join(directory, "report.json")
        env = {
            **os.environ,
            "DEFGUARD_API_TOKEN": info["api_token"],
            "DGPROV_CACHE_DIR": directory,
            "DGPROV_TENANT": info["tenant_id"],
            "DGPROV_CLIENT_ID": info["client_id"],
        }
        command = [
            PYTHON, "-m", "dgprov", "generate-tokens", "--url", info["defguard_url"],
            "--group-name", info["group_name"], "--authority", info["authority_url"],
            "--graph-url", info["graph_url"], "--ca-bundle", info["ca_bundle"],
            "--auth", "device-code", "--yes", "--report", report, *extra,
        ]  # fmt: skip
        return measure(command, env, report)


def measure(
    command: list[str], env: dict[str, str], report: str
) -> tuple[float, float, dict[str, Any]]:
    """Run one dgprov process: wall seconds, its peak RSS in MB and its report."""
    with tempfile.TemporaryFile() as stderr:  # a pipe could fill up and stall the child
        started = time.perf_counter()
        ours = high_water_mark(os.getpid())  # the parent mm's high-water mark is what is carried
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        sampled = 0
        while True:
            pid, _, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            sampled = max(sampled, high_water_mark(process.pid))
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        # Linux carries this process's RSS at spawn into the child's ru_maxrss: believe it only
        # when it is above that; else the child's own high-water mark, sampled while it ran.
        peak = usage.ru_maxrss if usage.ru_maxrss > ours else sampled
        stderr.seek(0)
        errors = stderr.read().decode(errors="replace")
    if not os.path.exists(report):
        raise SystemExit(f"{command[3]} wrote no report: {errors[-2000:]}")
    with open(report, encoding="utf-8") as handle:
        document: dict[str, Any] = json.load(handle)
    return elapsed, peak / 1024, document


def high_water_mark(pid: int, field: str = "VmHWM:") -> int:
    """The process's peak RSS so far in kB (``VmHWM``), or another field of its status."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for entry in status:
                if entry.startswith(field):
                    return int(entry.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def line(name: str, seconds: float, rss: float | None, counts: tuple[int, int], note: str) -> None:
    rss_text = f"{rss:7.0f} MB" if rss is not None else "      - "
    print(
        f"{name:<28} {seconds:9.2f} s {rss_text} {counts[0]:>9} {counts[1]:>9}   {note}", flush=True
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument(
        "--large-users", type=int, default=100_000, help="0 skips the large scenario"
    )
    parser.add_argument("--quota-scale", type=float, default=0.05)
    parser.add_argument("--time-scale", type=float, default=0.01)
    parser.add_argument(
        "--scenarios", default="latency,throttled,large", help="comma-separated subset to run"
    )
    args = parser.parse_args()
    scenarios = set(args.scenarios.split(","))
    print(f"{'scenario':<28} {'wall':>11} {'peak RSS':>10} {'Defguard':>9} {'Graph':>9}   note")
    common = ["--users", str(args.users)]

    if "latency" in scenarios:
        latency_scenario(args, common)
    if "throttled" in scenarios:
        throttled_scenario(args, common)
    if "large" in scenarios and args.large_users:
        large_scenario(args)
    return 0


def latency_scenario(args: argparse.Namespace, common: list[str]) -> None:
    with sandbox(*common, "--latency-ms", str(args.latency_ms)) as info:
        base = baseline(info)
        line(
            f"baseline, {args.users} users",
            base,
            None,
            request_counts(info),
            "sequential, as the PowerShell script",
        )
    with sandbox(*common, "--latency-ms", str(args.latency_ms)) as info:
        seconds, rss, report = run_dgprov(info)
        ok = report["summary"]["provisioned"] == args.users
        line(
            f"dgprov, {args.users} users",
            seconds,
            rss,
            request_counts(info),
            f"{base / seconds:.1f}x faster than the baseline (target >= 20x)"
            + ("" if ok else ", NOT ALL PROVISIONED"),
        )


def throttled_scenario(args: argparse.Namespace, common: list[str]) -> None:
    rate = 3000 * args.quota_scale / (150 * args.time_scale)
    bound = args.users / rate
    with sandbox(
        *common,
        "--throttle",
        "documented",
        "--quota-scale",
        str(args.quota_scale),
        "--time-scale",
        str(args.time_scale),
    ) as info:
        seconds, rss, report = run_dgprov(info)
        failed = report["summary"]["failed"]
        line(
            f"dgprov throttled, {args.users}",
            seconds,
            rss,
            request_counts(info),
            f"{seconds / bound:.2f}x the write-quota bound of {bound:.1f} s ({rate:.0f} writes/s; "
            f"target <= 1.15x), {failed} failed",
        )


def large_scenario(args: argparse.Namespace) -> None:
    with sandbox("--users", str(args.large_users)) as info:
        seconds, rss, report = run_dgprov(info)
        provisioned = report["summary"]["provisioned"]
        line(
            f"dgprov, {args.large_users} users",
            seconds,
            rss,
            request_counts(info),
            f"peak RSS target <= 200 MB, {provisioned} provisioned",
        )


if __name__ == "__main__":
    sys.exit(main())
