"""Benchmark ``dgprov broker``: provisions per second and latency with concurrent clients.

Run from the repository root: ``.venv/bin/python bench/broker.py`` (``make bench`` runs it too).

A sandbox process (N synthetic users, ``--latency-ms`` added to every Defguard and Graph
request) and a broker process (``--workers``) run apart from this client, which first signs
every user in for the broker's scope (the device-code grant over HTTP, approved through the
sandbox's control API), then sends one provisioning request per user from ``--clients``
concurrent connections. Three passes: ``cold`` (every user's mapping read from Graph), then the
same users twice more within the mapping cache's 30 s (``--rate-window 0`` so the broker answers
instead of refusing with 429); the third is warm in every worker. Each answer's
``Server-Timing`` header splits its time
into Defguard, Graph, the authority and the broker's own share.

Baseline, measured in the same run: the same number of ``start_enrollment`` calls sent straight
to the sandbox's Defguard with the same concurrency; the broker cannot be faster than that.
Targets: >= 100 provisions/s with two workers, broker's own p99 < 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import selectors
import signal
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

PYTHON = sys.executable
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@contextmanager
def process(command: list[str], env: dict[str, str] | None = None) -> Iterator[tuple[Any, int]]:
    """A child that prints one JSON line when ready; yields (that line, its pid)."""
    child = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**(env or os.environ), "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert child.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(child.stdout, selectors.EVENT_READ)
        if not selector.select(300):
            raise SystemExit(f"{command[2]} did not start")
        yield json.loads(child.stdout.readline()), child.pid
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=60)


def family(pid: int) -> list[int]:
    """``pid`` and its children (Linux)."""
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            pids.append(int(stat.parent.name))
    return pids


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` and its children so far."""
    total = 0
    for each in family(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """Peak RSS (VmHWM) of ``pid`` and its children, summed, in MB (Linux)."""
    total = 0.0
    for each in family(pid):
        try:
            status = Path(f"/proc/{each}/status").read_text()
        except OSError:
            continue
        found = re.search(r"VmHWM:\s+(\d+) kB", status)
        total += int(found.group(1)) / 1024 if found else 0.0
    return total


async def sign_in_all(info: dict[str, Any], upns: list[str]) -> list[str]:
    """A broker-scope access token per user: device code, approved by the control API."""
    authority = info["authority_url"]
    control = authority.rsplit("/", 1)[0] + "/_sandbox/device-codes"
    context = ssl.create_default_context(cafile=info["ca_bundle"])
    limit = asyncio.Semaphore(16)
    async with httpx.AsyncClient(verify=context, timeout=60) as client:

        async def one(upn: str) -> str:
            async with limit:
                flow = (
                    await client.post(
                        f"{authority}/oauth2/v2.0/devicecode",
                        data={"client_id": info["client_id"], "scope": info["broker_scope"]},
                    )
                ).json()
                await client.post(f"{control}/{flow['user_code']}/approve", json={"upn": upn})
                answer = await client.post(
                    f"{authority}/oauth2/v2.0/token",
                    data={
                        "grant_type": DEVICE_GRANT,
                        "client_id": info["client_id"],
                        "device_code": flow["device_code"],
                    },
                )
                token: str = answer.json()["access_token"]
                return token

        return list(await asyncio.gather(*(one(upn) for upn in upns)))


Result = tuple[float, dict[str, float]]  # seconds, Server-Timing parts (ms)


async def drive(
    clients: int, count: int, send: Callable[[httpx.AsyncClient, int], Awaitable[Result]]
) -> tuple[float, list[Result]]:
    """``count`` requests from ``clients`` concurrent connections; (wall seconds, results)."""
    queue = iter(range(count))
    results: list[Result] = []

    async def worker(client: httpx.AsyncClient) -> None:
        for index in queue:
            results.append(await send(client, index))

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        return time.perf_counter() - started, results


def server_timing(header: str) -> dict[str, float]:
    parts = {}
    for item in header.split(","):
        name, _, duration = item.strip().partition(";dur=")
        parts[name] = float(duration)
    return parts


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def report(name: str, wall: float, results: list[Result], baseline: float | None) -> None:
    latencies = [seconds * 1000 for seconds, _ in results]
    own = [parts.get("broker", 0.0) for _, parts in results]
    defguard = [parts.get("defguard", 0.0) for _, parts in results]
    graph = [parts.get("graph", 0.0) for _, parts in results]
    rate = len(results) / wall
    ratio = f", {rate / baseline:.2f}x the direct Defguard rate" if baseline else ""
    print(
        f"{name:<22} {len(results)} in {wall:6.2f} s = {rate:7.1f}/s{ratio}; latency p50 "
        f"{statistics.median(latencies):6.1f} ms p99 {percentile(latencies, 0.99):6.1f} ms; "
        f"Defguard p50 {statistics.median(defguard):5.1f} ms, Graph p50 "
        f"{statistics.median(graph):5.1f} ms; broker's own p50 {statistics.median(own):5.2f} ms "
        f"p99 {percentile(own, 0.99):5.2f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=600)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args()
    sandbox = [PYTHON, "-m", "dgprov_sandbox", "--users", str(args.users)]
    sandbox += ["--latency-ms", str(args.latency_ms)]
    with process(sandbox) as (info, sandbox_pid):
        upns = info["user_upns"][: args.users]
        started = time.perf_counter()
        tokens = asyncio.run(sign_in_all(info, upns))
        print(f"signed in {len(tokens)} users in {time.perf_counter() - started:.1f} s")
        baseline = asyncio.run(direct_defguard(info, args, len(tokens)))
        broker_env = {
            **os.environ,
            "DEFGUARD_API_TOKEN": info["api_token"],
            "DGPROV_CLIENT_SECRET": info["broker_client_secret"],
        }
        command = [PYTHON, "-m", "dgprov", "broker", "--url", info["defguard_url"]]
        command += ["--group-name", info["group_name"], "--tenant", info["tenant_id"]]
        command += ["--client-id", info["broker_client_id"], "--authority", info["authority_url"]]
        command += ["--graph-url", info["graph_url"], "--ca-bundle", info["ca_bundle"]]
        command += ["--listen", "127.0.0.1:0", "--workers", str(args.workers)]
        command += ["--rate-window", "0"]
        with process(command, broker_env) as (ready, pid):
            url = ready["broker_url"]
            while httpx.get(f"{url}/readyz").status_code != 200:
                time.sleep(0.1)
            # Each worker caches what it read itself: the second pass is warm only where the
            # same worker answers again, the third everywhere (all within the 30 s cache).
            for name in ("cold (Graph lookups)", "second pass", "third pass (warm)"):
                cpu = cpu_seconds(pid), cpu_seconds(sandbox_pid)
                wall, results = asyncio.run(provision_all(url, tokens, args.clients))
                report(name, wall, results, baseline)
                broker_cpu = (cpu_seconds(pid) - cpu[0]) / len(results) * 1000
                sandbox_cpu = (cpu_seconds(sandbox_pid) - cpu[1]) / len(results) * 1000
                print(
                    f"{'':<22} CPU per provision: broker {broker_cpu:.1f} ms, sandbox "
                    f"{sandbox_cpu:.1f} ms"
                )
            print(f"broker peak RSS, {args.workers} workers and parent: {peak_rss_mb(pid):.0f} MB")
    return 0


async def provision_all(url: str, tokens: list[str], clients: int) -> tuple[float, list[Result]]:
    async def send(client: httpx.AsyncClient, index: int) -> Result:
        started = time.perf_counter()
        response = await client.post(
            f"{url}/v1/provisioning", headers={"Authorization": f"Bearer {tokens[index]}"}
        )
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise SystemExit(f"the broker answered {response.status_code}: {response.text}")
        return elapsed, server_timing(response.headers["server-timing"])

    return await drive(clients, len(tokens), send)


async def direct_defguard(info: dict[str, Any], args: argparse.Namespace, count: int) -> float:
    """The baseline: start_enrollment straight to Defguard, same concurrency; provisions/s."""
    usernames = [upn.split("@")[0] for upn in info["user_upns"][:count]]
    headers = {"Authorization": f"Bearer {info['api_token']}"}

    async def send(client: httpx.AsyncClient, index: int) -> Result:
        started = time.perf_counter()
        response = await client.post(
            f"{info['defguard_url']}/api/v1/user/{usernames[index]}/start_enrollment",
            json={"email": None, "send_enrollment_notification": False},
            headers=headers,
        )
        assert response.status_code == 201, response.text
        return time.perf_counter() - started, {}

    wall, results = await drive(args.clients, count, send)
    latencies = [seconds * 1000 for seconds, _ in results]
    print(
        f"{'baseline (direct)':<22} {count} in {wall:6.2f} s = {count / wall:7.1f}/s; latency "
        f"p50 {statistics.median(latencies):6.1f} ms p99 {percentile(latencies, 0.99):6.1f} ms"
    )
    return count / wall


if __name__ == "__main__":
    sys.exit(main())
