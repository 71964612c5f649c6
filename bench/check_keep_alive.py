"""Idle keep-alive connections: still usable after a long idle spell, to the mock and through the gateway?

    python bench/check_keep_alive.py [--idle 65]

Starts `harness serve` (mock and gateway, loopback only), sends one request on a kept-alive connection to
each, leaves both idle for --idle wall seconds, then sends again on the same sockets. Prints each outcome
and exits 1 when a connection was closed under the client (what uvicorn's default 5 s keep-alive did).
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCENARIO = "backends: [{name: east, deployments: {gpt-4o: {latency: {ttft: 0, per_token: 0}}}}]\n"
PATH = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
BODY = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})


def ask(connection: http.client.HTTPConnection) -> int:
    connection.request("POST", PATH, BODY, {"content-type": "application/json"})
    answer = connection.getresponse()
    answer.read()
    return answer.status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=65.0, help="wall seconds to leave the connections idle")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scenario, ready = Path(tmp) / "scenario.yaml", Path(tmp) / "ready.jsonl"
        scenario.write_text(SCENARIO)
        command = [
            sys.executable,
            "-m",
            "harness.cli",
            "serve",
            "--scenario",
            str(scenario),
            "--ready-file",
            str(ready),
        ]
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while not ready.exists():
                if server.poll() is not None or time.monotonic() > deadline:
                    print("harness serve did not start")
                    return 1
                time.sleep(0.05)
            servers = [json.loads(line) for line in ready.read_text().splitlines()]
            connections = {}
            for entry in servers:
                host, port = entry["url"].removeprefix("http://").rsplit(":", 1)
                connections[entry["role"]] = connection = http.client.HTTPConnection(host, int(port), timeout=10)
                print(f"{entry['role']}: first request {ask(connection)}")
            time.sleep(args.idle)
            failed = 0
            for role, connection in connections.items():
                try:
                    print(f"{role}: after {args.idle:g} s idle, same connection: {ask(connection)}")
                except (http.client.HTTPException, OSError) as exc:
                    failed += 1
                    print(f"{role}: after {args.idle:g} s idle, the connection was closed ({type(exc).__name__})")
            return 1 if failed else 0
        finally:
            server.terminate()
            server.wait(timeout=15)


if __name__ == "__main__":
    sys.exit(main())
