"""Checks before any load, each failing with one line (a UsageError, exit 2): ports, target, credentials.

- the web UI's port is free on its interface;
- `--host` answers a TCP connection (the host and the reason when it does not);
- one probe request with the run's credentials is not refused as unauthorized (401/403) and its
  deployment exists (404): the first mix of the first app, asking for a single token. A `--host` ending in
  `/openai` (the API's own prefix) is taken as the endpoint before it (every request drops it alike); a
  404 under a host with another path names that path rather than the deployment.

    check_ports(options)
    check_target("https://my-apim.azure-api.net", scenario, settings)
"""

from __future__ import annotations

import errno
import json
import random
import socket
from typing import Any
from urllib.parse import urlsplit

from harness.aoai.routes import endpoint_base
from harness.client import classify
from harness.errors import UsageError
from harness.loadgen.transport import Transport
from harness.records.outcomes import ErrorKind
from harness.scenario import Scenario
from harness.workload.requests import MixPicker, auth_headers, draw_request
from harness.workload.session import RunSettings

CONNECT_TIMEOUT_S = 5.0
PROBE_TIMEOUT_S = 30.0  # wall seconds; a cold real endpoint can take a while to answer its first request


def check_port_free(host: str, port: int, option: str) -> None:
    """UsageError when `host:port` cannot be bound because something listens there already."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # as the servers bind: reuse a port in TIME_WAIT, refuse one that has a listener
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            where = f"{host}:{port}" if host else f"port {port} (every interface)"
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(f"{where} is already in use: choose another port with {option}") from None
            raise UsageError(f"cannot listen on {where} ({exc.strerror}): change it with {option}") from None


def check_ports(options: Any) -> None:
    """The web UI's port, free before Locust starts listening on it (a master's port is bound already)."""
    if not (getattr(options, "headless", False) or getattr(options, "worker", False)):
        host = options.web_host if options.web_host not in ("*", None) else ""
        check_port_free(host, int(options.web_port), "--web-port")


def check_reachable(url: str) -> None:
    """UsageError naming the host and the reason when nothing answers a TCP connection there."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--host {url}: not an http(s) URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=CONNECT_TIMEOUT_S).close()
    except socket.gaierror as exc:
        raise UsageError(f"--host {url} is unreachable: cannot resolve {parts.hostname} ({exc.strerror})") from None
    except TimeoutError:
        raise UsageError(f"--host {url} is unreachable: no answer within {CONNECT_TIMEOUT_S:g} s") from None
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise UsageError(f"--host {url} is unreachable: {reason.lower()} ({parts.hostname}:{port})") from None


def check_target(url: str, scenario: Scenario, settings: RunSettings) -> None:
    """Reachable, credentials accepted, deployment found: one probe request, as the first app sends."""
    check_reachable(url)
    app = scenario.workload.apps[0]
    rng = random.Random(0)
    plan = draw_request(app, MixPicker(scenario.workload, app).pick(rng), rng)
    body = plan.body(settings.route)
    if plan.operation != "embeddings":
        body["max_tokens"] = 1  # the probe costs a handful of tokens, not a whole answer
    body.pop("stream", None)
    body.pop("stream_options", None)
    headers = {
        "content-type": "application/json",
        **auth_headers(app, settings.api_key, settings.bearer_token, settings.signer),
    }
    transport = Transport(url, settings.clock, PROBE_TIMEOUT_S * settings.clock.scale)
    try:
        path = plan.path(settings.api_version, settings.route)
        result = transport.send(path, json.dumps(body).encode(), headers, False)
    finally:
        transport.close()
    quota = classify(result.status, result.headers, None, settings.header_names) == ErrorKind.GATEWAY_QUOTA
    if result.status in (401, 403) and not quota:  # a 403 from a token quota means the credentials were fine
        if not (settings.api_key or settings.bearer_token):
            raise UsageError(f"{url} refused a request without credentials ({result.status}): give --api-key")
        given = "api key" if settings.api_key else "bearer token"
        raise UsageError(f"{given} rejected by {url} ({result.status})")
    if result.status == 404:
        path = plan.path(settings.api_version, settings.route)
        sent = urlsplit(endpoint_base(url)).path
        if sent not in ("", "/"):  # the host carries a path of its own: that, not the deployment, may be wrong
            raise UsageError(
                f"--host {url}: 404 on {sent}{path}; give the endpoint without an API path "
                f"(e.g. {urlsplit(url).scheme}://{urlsplit(url).netloc}), or check deployment '{plan.deployment}'"
            )
        raise UsageError(f"deployment '{plan.deployment}' not found at {url} (404 on {path})")
    if result.status == 0:
        raise UsageError(f"--host {url} did not answer the probe request: {result.error_detail or result.error}")
