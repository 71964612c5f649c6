"""A run with secrets keeps a scenario copy the report can read: the same report as a run without them.

The copy is written by the same code for a simulated run and a Locust run (harness.workload.rundir), so a
simulated run of token-limit-per-app with validate-jwt (an HS256 secret) and two subscriptions shows it.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
import yaml

from harness.cli import main
from harness.scenario import load_scenario
from harness.workload.rundir import is_redacted

ROOT = Path(__file__).resolve().parents[1]
PER_APP = ROOT / "scenarios" / "token-limit-per-app.yaml"
SIGNING_SECRET = "jwt-signing-secret-3d9c1b7a5e2f80a4c6d8"
KEYS = {"noisy": "sub-key-noisy-5e1f0c9b8d7a", "polite": "sub-key-polite-4c2a9e8f7b61"}
TRUST_CAVEAT = "claim, taken on trust: the gateway did not validate tokens ("


def with_auth(tmp_path: Path) -> Path:
    data = yaml.safe_load(PER_APP.read_text())
    data["gateway"]["auth"] = {
        "subscriptions": [{"id": f"team-{app}", "key": key} for app, key in KEYS.items()],
        "jwt": {"signing-secret": SIGNING_SECRET},
    }
    for app in data["workload"]["apps"]:
        app["subscription_key"] = KEYS[app["id"]]
    path = tmp_path / "token-limit-per-app.yaml"  # the same name: the report names its scenario file
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def report_lines(run_dir: Path) -> list[str]:
    """report.html's text, a line per element, without its figures and styles."""
    text = (run_dir / "report.html").read_text()
    text = re.sub(r"<style.*?</style>|<script.*?</script>", "", text, flags=re.S)
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
    return [html.unescape(line).strip() for line in re.sub(r"<[^>]+>", "\n", text).splitlines() if line.strip()]


def test_a_run_with_jwt_and_two_subscriptions_gets_every_section_of_a_run_without(tmp_path: Path) -> None:
    (tmp_path / "auth").mkdir()
    scenario = with_auth(tmp_path / "auth")
    assert main(["simulate", "--scenario", str(PER_APP), "--run-dir", str(tmp_path / "run")]) == 0
    assert main(["simulate", "--scenario", str(scenario), "--run-dir", str(tmp_path / "run-auth")]) == 0

    copy = (tmp_path / "run-auth" / "scenario.yaml").read_text()
    assert SIGNING_SECRET not in copy and not any(key in copy for key in KEYS.values())
    as_run = load_scenario(tmp_path / "run-auth" / "scenario.yaml")  # the copy validates
    auth = as_run.gateway.auth
    assert auth.jwt is not None and is_redacted(auth.jwt.signing_secret)
    placeholders = [s.key for s in auth.subscriptions]
    assert len(set(placeholders)) == 2 and all(is_redacted(key) for key in placeholders)
    # an app's key still names its subscription
    assert [app.subscription_key for app in as_run.workload.apps] == placeholders

    plain, authed = report_lines(tmp_path / "run"), report_lines(tmp_path / "run-auth")
    headings = re.compile(r"<h[1-4][^>]*>([^<]*)")
    assert (
        headings.findall((tmp_path / "run").joinpath("report.html").read_text())[1:]
        == headings.findall((tmp_path / "run-auth").joinpath("report.html").read_text())[1:]
    )
    assert "This run's answer:" in authed and any(line.startswith("App noisy was throttled") for line in authed)
    assert "load ran 180 scenario s of 180 planned" in authed
    assert not any("Not shown" in line or "does not validate" in line for line in authed)
    # nothing of the run without auth is missing but the run's name and the caveat that validation removes
    lost = [line for line in plain if line not in authed]
    assert lost and set(lost) <= {"Run run", "appid", "gateway.auth.jwt", TRUST_CAVEAT,
                                  "apps are told apart by their token's", "), so a caller could have claimed another app"}  # fmt: skip


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text.replace("tokens-per-minute: 6000", "tokens-per-minute: many"),
        lambda text: text + "\n  - [unclosed\n",
        lambda text: "\xff",
    ],
)
def test_a_scenario_copy_the_report_cannot_read_fails_the_report_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage
) -> None:  # type: ignore[no-untyped-def]
    run_dir = tmp_path / "run"
    assert main(["simulate", "--scenario", str(PER_APP), "--run-dir", str(run_dir), "--no-report"]) == 0
    copy = run_dir / "scenario.yaml"
    copy.write_bytes(damage(copy.read_text()).encode("latin-1"))
    capsys.readouterr()
    assert main(["report", str(run_dir)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(copy) in error and "the run's scenario cannot be read" in error
    assert not (run_dir / "report.html").exists()
