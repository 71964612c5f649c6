"""The pure deployment model on a virtual clock: request and token windows, PTU utilization."""

from __future__ import annotations

import pytest

from harness.clock import VirtualClock
from harness.mock.deployment import DeploymentModel, requests_per_10s
from harness.records.outcomes import BackendDecision
from harness.scenario import Deployment
from harness.tokens import admission_estimate


def standard(tpm: int = 50_000, **kw: object) -> tuple[DeploymentModel, VirtualClock]:
    clock = VirtualClock(1_000.0)
    return DeploymentModel(Deployment.model_validate({"model": "gpt-4o", "tpm": tpm, **kw}), clock), clock


def test_50k_tpm_allows_50_requests_per_10_seconds_and_says_49_left_after_the_first() -> None:
    model, _ = standard(50_000)
    first = model.admit(10)
    assert (first.limit_requests, first.remaining_requests) == (50, 49)
    decisions = [model.admit(10).decision for _ in range(49)]
    assert decisions == [BackendDecision.OK] * 49
    assert model.admit(10).decision == BackendDecision.RATE_LIMITED_REQUESTS


@pytest.mark.parametrize(
    ("tpm", "ratio", "expected"), [(1_000, 6, 1), (50_000, 6, 50), (300_000, 6, 300), (10_000, 3, 5)]
)
def test_request_window_is_rpm_over_six(tpm: int, ratio: float, expected: int) -> None:
    assert requests_per_10s(Deployment(tpm=tpm, rpm_per_1k_tpm=ratio)) == expected


def test_1k_tpm_gives_one_request_per_10_seconds() -> None:
    model, clock = standard(1_000)
    assert model.admit(5).allowed
    clock.advance(9.9)
    refused = model.admit(5)
    assert refused.decision == BackendDecision.RATE_LIMITED_REQUESTS
    clock.advance(10.0)  # the refused request also used the window: it ages out 10 s after it came
    assert model.admit(5).allowed


def test_max_tokens_100_with_a_tiny_prompt_drains_about_100_plus_prompt_tokens() -> None:
    model, _ = standard(50_000)
    body = {"messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 100}
    estimate = admission_estimate("chat", body, "gpt-4o", model.default_completion)
    admission = model.admit(estimate)
    assert estimate == 100 + 3  # 11 characters -> 3 tokens
    assert admission.remaining_tokens == 50_000 - 103


def test_unset_max_tokens_charges_the_deployment_default_or_the_model_default() -> None:
    assert standard(default_max_tokens=250)[0].default_completion == 250
    assert DeploymentModel(Deployment(model="gpt-35-turbo"), VirtualClock()).default_completion == 16


def test_token_window_refuses_then_recovers_as_requests_age_out() -> None:
    model, clock = standard(1_000, rpm_per_1k_tpm=600)  # plenty of requests, few tokens
    assert model.admit(600).allowed
    clock.advance(20)
    assert model.admit(300).allowed
    clock.advance(1)
    refused = model.admit(200)
    assert refused.decision == BackendDecision.RATE_LIMITED_TOKENS
    # the first 600 leave 60 s after they came, i.e. 39 s from now: that is when 200 more fit
    assert refused.retry_after == pytest.approx(39.0, abs=0.2)
    assert refused.remaining_tokens == 100
    clock.advance(refused.retry_after)
    assert model.admit(200).allowed
    clock.advance(60)
    assert model.admit(1).remaining_tokens == 999


@pytest.mark.parametrize(("count_rejected", "honest"), [(True, 9.0), (False, 6.0)])
def test_retry_after_of_a_request_429_is_the_earliest_time_it_would_be_admitted(
    count_rejected: bool, honest: float
) -> None:
    """2 per 10 s, requests at 0 and 3, refused at 4. Counted, the refusal holds a place until 14, so a place
    is free only when the second request ages out (13, 9 s on); uncounted, when the first does (10, 6 s on)."""
    model, clock = standard(1_000, rpm_per_1k_tpm=12, count_rejected_requests=count_rejected)
    model.admit(1)
    clock.advance(3)
    model.admit(1)
    clock.advance(1)
    refused = model.admit(1)
    assert refused.decision == BackendDecision.RATE_LIMITED_REQUESTS
    assert refused.retry_after == pytest.approx(honest, abs=0.05)
    assert refused.estimate == 0
    clock.advance(refused.retry_after - 0.1)
    assert not model.admit(1, count_rejected=False).allowed  # a moment earlier: no place yet (not counted)
    clock.advance(0.1)
    assert model.admit(1).allowed  # at the advertised time: admitted


def test_a_request_429_waits_for_the_token_window_too() -> None:
    """Refused on the request window while the token window has no room either: the later of the two."""
    model, clock = standard(1_000, rpm_per_1k_tpm=12)  # 2 per 10 s
    model.admit(600)
    clock.advance(3)
    model.admit(300)
    clock.advance(1)
    refused = model.admit(300)  # the requests free at 13 s, the 300 tokens only when the 600 leave at 60 s
    assert refused.decision == BackendDecision.RATE_LIMITED_REQUESTS
    assert refused.retry_after == pytest.approx(56.0, abs=0.2)
    clock.advance(refused.retry_after)
    assert model.admit(300).allowed


def test_refused_requests_consume_the_request_window_unless_told_not_to() -> None:
    model, _clock = standard(1_000, rpm_per_1k_tpm=12)
    model.admit(1)
    model.admit(1)
    model.admit(1, count_rejected=False)
    assert model.requests is not None and model.requests.used == 2
    model.admit(1)
    assert model.requests.used == 3


def test_a_deployment_that_does_not_count_rejected_requests_never_charges_them() -> None:
    model, clock = standard(1_000, rpm_per_1k_tpm=12, count_rejected_requests=False)
    model.admit(1)
    model.admit(1)
    for _ in range(50):  # a client hammering the full window
        clock.advance(0.1)
        assert model.admit(1).decision == BackendDecision.RATE_LIMITED_REQUESTS
    assert model.requests is not None and model.requests.used == 2
    clock.advance(5.0)  # 10 s after the two admitted requests
    assert model.admit(1).allowed


def test_counted_rejections_from_a_fast_retrying_client_keep_the_window_full() -> None:
    """AOAI's documented rule, the default: a client retrying every second never gets in while it retries."""
    model, clock = standard(1_000, rpm_per_1k_tpm=12)
    model.admit(1)
    model.admit(1)
    for _ in range(60):
        clock.advance(1.0)
        refused = model.admit(1)
        assert refused.decision == BackendDecision.RATE_LIMITED_REQUESTS
        assert refused.remaining_tokens >= 998  # the tokens were free all along
    clock.advance(refused.retry_after)  # waiting what the last refusal said gets it in
    assert model.admit(1).allowed


def test_request_larger_than_the_token_window_never_fits_and_is_told_the_window_length() -> None:
    model, _ = standard(1_000)
    refused = model.admit(5_000)
    assert refused.decision == BackendDecision.RATE_LIMITED_TOKENS
    assert refused.retry_after == 60.0


def ptu(ptu: int = 1, per_ptu: int = 6_000, **kw: object) -> tuple[DeploymentModel, VirtualClock]:
    clock = VirtualClock(0.0)
    spec = Deployment.model_validate({"model": "gpt-4o", "ptu": ptu, "ptu_tokens_per_minute": per_ptu, **kw})
    return DeploymentModel(spec, clock), clock


def admitted_in_first_minute(model: DeploymentModel, clock: VirtualClock, estimate: int) -> int:
    """Tokens admitted to a PTU deployment offered a request of `estimate` tokens every second for 60 s."""
    admitted = 0
    for _ in range(60):
        admitted += estimate if model.admit(estimate).allowed else 0
        clock.advance(1.0)
    return admitted


def test_a_cold_ptu_deployment_admits_about_twice_its_rate_in_its_first_minute() -> None:
    """The default: the bucket starts empty, fills in one minute and drains one minute's worth meanwhile."""
    model, clock = ptu(1, 6_000)  # 6,000 tokens per minute
    assert model.utilization() == 0.0
    assert 11_000 <= admitted_in_first_minute(model, clock, 500) <= 12_500


def test_a_ptu_deployment_that_starts_full_admits_its_rate_only() -> None:
    model, clock = ptu(1, 6_000, ptu_initial_utilization=100)
    assert model.utilization() == pytest.approx(100.0)
    assert 5_500 <= admitted_in_first_minute(model, clock, 500) <= 6_500


def test_ptu_initial_utilization_sets_the_starting_level() -> None:
    model, clock = ptu(1, 6_000, ptu_initial_utilization=50)
    assert model.utilization() == pytest.approx(50.0)
    clock.advance(15)  # drains 25 % in 15 s
    assert model.utilization() == pytest.approx(25.0)


def test_ptu_utilization_drains_continuously() -> None:
    model, clock = ptu(1, 6_000)  # capacity 6,000, drains 100 tokens/s
    admission = model.admit(3_000)
    assert admission.allowed and admission.utilization == pytest.approx(50.0)
    assert admission.limit_requests is None  # no x-ratelimit-* figures on PTU
    clock.advance(10)
    assert model.utilization() == pytest.approx(100 * 2_000 / 6_000)
    clock.advance(100)
    assert model.utilization() == 0.0


def test_ptu_allows_a_burst_over_100_then_refuses_until_below_100() -> None:
    model, clock = ptu(1, 6_000)
    assert model.admit(5_000).allowed
    burst = model.admit(2_000)  # admitted at 83 %, takes it to 117 %
    assert burst.allowed and burst.utilization == pytest.approx(116.67, abs=0.01)
    refused = model.admit(10)
    assert refused.decision == BackendDecision.PTU_OVER_CAPACITY
    assert refused.retry_after == pytest.approx(10.0)  # 1,000 tokens over, draining 100/s
    clock.advance(refused.retry_after)
    assert model.admit(10).allowed


def test_ptu_charge_is_corrected_to_the_actual_cost() -> None:
    model, _ = ptu(1, 6_000)
    admission = model.admit(1_200)  # prompt + max_tokens
    model.finish(admission, 300)  # prompt + completion actually generated
    assert model.utilization() == pytest.approx(5.0)


def test_standard_deployment_keeps_the_estimate_after_the_request() -> None:
    model, _ = standard(50_000)
    admission = model.admit(1_000)
    model.finish(admission, 20)
    assert model.tokens is not None and model.tokens.remaining() == 49_000


def test_latency_summary_has_the_distribution_of_the_token_by_token_plan() -> None:
    """The simulator's one-draw total has the mean and spread of the mock's per-token plan."""
    import random
    import statistics

    from harness.mock.latency import LatencyModel
    from harness.scenario import LatencyProfile

    profile = LatencyProfile.model_validate(
        {
            "ttft": {"kind": "lognormal", "median": 0.25, "p95": 0.5},
            "per_token": {"kind": "normal", "mean": 0.012, "stddev": 0.002, "min": 0},
        }
    )
    model = LatencyModel(profile)

    def token_by_token(rng: random.Random) -> float:
        return 0.1 + profile.ttft.sample(rng) + sum(max(0.0, profile.per_token.sample(rng)) for _ in range(79))

    drawn = [token_by_token(random.Random(i)) for i in range(3000)]
    summarised = [model.summary(80, random.Random(10_000 + i), 0.1).total for i in range(3000)]
    assert statistics.mean(summarised) == pytest.approx(statistics.mean(drawn), rel=0.02)
    assert statistics.stdev(summarised) == pytest.approx(statistics.stdev(drawn), rel=0.08)
    # the server's plan keeps the summary's times and spreads gaps of the per-token distribution around them
    plans = [model.plan(80, random.Random(i), 0.1, spread=random.Random(-i)) for i in range(300)]
    gaps = [g for plan in plans for g in plan.gaps]
    assert statistics.mean(gaps) == pytest.approx(0.012, rel=0.02)
    assert statistics.stdev(gaps) == pytest.approx(0.002, rel=0.08)
    # a shape the one draw would not reproduce exactly falls back to a draw per token
    uniform = LatencyModel(
        LatencyProfile.model_validate({"ttft": 0.5, "per_token": {"kind": "uniform", "low": 0.01, "high": 0.02}})
    )
    assert uniform.summary(5, random.Random(1)).total == uniform.plan(5, random.Random(1)).total


def test_the_server_plan_takes_the_same_draws_as_the_simulator_summary() -> None:
    """Both drivers leave a resource's generator in the same place after each answer, so that a seed gives
    the next request the same length and latency whether a server or the simulator answers it."""
    import random

    from harness.clock import VirtualClock
    from harness.mock.core import BackendCore
    from harness.mock.latency import LatencyModel
    from harness.mock.synth import TextSource
    from harness.scenario import BackendInstance, LatencyProfile

    server, simulator = (BackendCore(BackendInstance(), VirtualClock(), seed=2) for _ in range(2))
    text = TextSource("gpt-4o")
    for _ in range(20):
        served = server.find("gpt-4o")
        assert served is not None
        completion = server.completion(served, 2000)
        text.pieces(completion.tokens, server.answer_rng)  # the words are the server's own draws
        plan = server.latency(served, completion.tokens, 0.0)
        simulated = simulator.find("gpt-4o")
        assert simulated is not None
        assert simulator.completion(simulated, 2000) == completion
        summary = simulator.latency_summary(simulated, completion.tokens, 0.0)
        assert (plan.ttft, plan.total) == pytest.approx((summary.ttft, summary.total), abs=1e-9)
        assert server.rng.getstate() == simulator.rng.getstate()
    # a shape drawn gap by gap draws the same gaps in both
    uniform = LatencyModel(LatencyProfile.model_validate({"per_token": {"kind": "uniform", "low": 0.01, "high": 0.02}}))
    left, right = random.Random(5), random.Random(5)
    assert uniform.plan(30, left, spread=random.Random(0)).total == uniform.summary(30, right).total
    assert left.getstate() == right.getstate()


def test_network_latency_delays_the_decision_and_the_answer() -> None:
    from harness.clock import VirtualClock
    from harness.mock.core import BackendCore
    from harness.scenario import BackendInstance

    clock = VirtualClock(100.0)
    core = BackendCore(BackendInstance.model_validate({"network_latency": 0.05}), clock, seed=0)
    steps = core.admit(core.find("gpt-4o"), estimate=300)
    assert next(steps) == 0.05  # the request is still on its way: nothing is decided yet
    clock.advance(0.05)
    with pytest.raises(StopIteration) as done:
        next(steps)
    verdict = done.value.value
    assert verdict.status == 200 and verdict.added == pytest.approx(0.05)  # the way back


async def test_a_mock_server_answers_with_the_draws_the_simulator_makes() -> None:
    """Request by request, the mock server's answers have the length and latency a simulated resource of the
    same seed draws: nothing the server alone needs (its words, its token spacing) comes from the shared draws."""
    from mock_helpers import mock_app

    from harness.clock import VirtualClock
    from harness.mock.core import BackendCore
    from harness.scenario import BackendInstance

    simulator = BackendCore(BackendInstance(name="east"), VirtualClock(), seed=2)
    async with mock_app(seed=2) as mock:
        for stream in (False, True, False, True, False):
            response = await mock.chat(max_tokens=2000, stream=stream)
            assert response.status_code == 200
            row = mock.log.rows[-1]
            state = simulator.find("gpt-4o")
            assert state is not None
            tokens = simulator.completion(state, 2000).tokens
            summary = simulator.latency_summary(state, tokens, 0.0)
            assert row["completion_tokens"] == tokens
            assert row["duration_s"] == pytest.approx(summary.total, abs=1e-6)


def test_a_random_network_latency_leaves_the_answers_draws_where_they_were() -> None:
    """Calibration gives the simulator a random network_latency where the live run had a constant one: the
    answers (their lengths and latencies) must still be those the same seed gives the live run."""
    from harness.mock.core import BackendCore, run_now
    from harness.scenario import BackendInstance

    def answers(network: object) -> list[tuple[int, float]]:
        clock = VirtualClock()
        core = BackendCore(BackendInstance.model_validate({"network_latency": network}), clock, seed=4)
        state = core.find("gpt-4o")
        assert state is not None
        out = []
        for _ in range(20):
            run_now(core.admit(state, estimate=300))
            tokens = core.completion(state, 200).tokens
            out.append((tokens, round(core.latency_summary(state, tokens, 0.0).total, 9)))
        return out

    assert answers(0.01) == answers({"kind": "lognormal", "median": 0.01, "p95": 0.03})
