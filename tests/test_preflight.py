"""Pre-flight checks: port in use, unreachable host, rejected credentials, unknown deployment.

Each is one line on stderr and exit code 2 before any load, with no traceback; the target is a real HTTP
server on loopback answering as the real service would.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.loadgen.preflight import check_port_free, check_reachable
from tests.loadgen_helpers import RUN_TIMEOUT_S, free_port, locust

pytestmark = pytest.mark.e2e


class _Refusing(BaseHTTPRequestHandler):
    """Answers every POST with the status the server was made with, in AOAI's error shape."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        status = self.server.status  # type: ignore[attr-defined]
        body = b'{"error": {"code": "%d", "message": "refused"}}' % status
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def refusing_server(request: pytest.FixtureRequest) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    server.status = request.param  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run_to_the_end(tmp_path: Path, *args: str) -> tuple[int, str]:
    proc = locust(*args, "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    _, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    return proc.returncode, err


def the_error_line(err: str) -> str:
    assert "Traceback" not in err, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("locust: error:")]
    assert len(lines) == 1, err[-2000:]
    return lines[0]


def test_web_ui_port_in_use_is_one_line_and_starts_nothing(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        code, err = run_to_the_end(tmp_path, "--web-port", str(port))
    assert code == 2
    assert the_error_line(err) == (
        f"locust: error: 127.0.0.1:{port} is already in use: choose another port with --web-port"
    )
    assert not (tmp_path / "run").exists(), "the run started before its port was checked"


def test_unreachable_host_names_host_and_reason(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    code, err = run_to_the_end(tmp_path, "--headless", "-t", "5s", "--host", f"http://127.0.0.1:{port}")
    assert code == 2
    assert the_error_line(err) == (
        f"locust: error: --host http://127.0.0.1:{port} is unreachable: connection refused (127.0.0.1:{port})"
    )
    assert not (tmp_path / "run" / "records.csv").exists()


@pytest.mark.parametrize("refusing_server", [401, 403], indirect=True)
def test_rejected_api_key_is_one_line(tmp_path: Path, refusing_server: str, request: pytest.FixtureRequest) -> None:
    code, err = run_to_the_end(tmp_path, "--headless", "-t", "5s", "--host", refusing_server, "--api-key", "k")
    assert code == 2
    status = request.node.callspec.params["refusing_server"]  # not read off the text: a port can contain "401"
    assert the_error_line(err) == f"locust: error: api key rejected by {refusing_server} ({status})"


@pytest.mark.parametrize("refusing_server", [404], indirect=True)
def test_unknown_deployment_is_one_line(tmp_path: Path, refusing_server: str) -> None:
    code, err = run_to_the_end(tmp_path, "--headless", "-t", "5s", "--host", refusing_server, "--api-key", "k")
    assert code == 2
    line = the_error_line(err)
    assert line.startswith(f"locust: error: deployment 'gpt-4o' not found at {refusing_server} (404 on /openai/")


def test_port_check_in_process() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UsageError, match=re.escape(f"127.0.0.1:{port} is already in use")):
            check_port_free("127.0.0.1", port, "--web-port")
    check_port_free("127.0.0.1", port, "--web-port")  # free again once closed


def test_host_that_is_not_a_url_or_does_not_resolve() -> None:
    with pytest.raises(UsageError, match="not an http"):
        check_reachable("127.0.0.1:8080")
    with pytest.raises(UsageError, match=re.escape("cannot resolve no-such-host.invalid")):
        check_reachable("http://no-such-host.invalid")
