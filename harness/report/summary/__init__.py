"""summary.json: the headline numbers of a run, computed with pandas from the records and the two server logs.

One module per section (`run_facts`, `traffic`, `retries`, `latency`, `splits`, `breaker`, `backend_log`,
`chargeback`; the cost is `harness.report.cost`), their shapes in `schema`, the records as they all read
them in `frame`, the time windows in `windows`; `build.summarize` assembles them in summary.json's order,
and `load` reads a summary back from JSON, checked against the shapes.

Definitions (the report and summary.json use these, and only these):
- outcome of an attempt: `success` (no error kind, status 1-399), `gateway_token_limit` (429),
  `gateway_quota` (403), `backend_429`, `breaker_open` (503) from the record's error kind, else `other_error`;
- a logical request is unfinished when its last attempt's decision is `retry`: the run ended while it waited
  to retry, so it neither succeeded nor failed. `requests.logical` counts the finished ones only; the
  attempt-level numbers (attempts, 429 rates, Retry-After, retries) include the unfinished ones' attempts;
- an attempt in flight when its user stopped (a stage's ramp-down, or the end of the load: Locust stops a
  user mid-request) is counted nowhere: the client never recorded it, and the backends' own counts (`answered`, `rate_429`) leave out the log rows of requests
  no record has (matched on the x-ms-client-request-id they carry; a row without one is kept). The summary
  states how many there were (`requests.in_flight_when_stopped`, from the gateway log, else the backend log; None
  without either);
- a finished logical request succeeded when any of its attempts did; the client-visible failure rate is the
  share of finished logical requests that did not (None when none finished);
- retries per request: attempts per logical request started (unfinished included) minus one;
- end-to-end latency: per succeeded logical request, first attempt's start to last attempt's end;
- start and duration: when the load started and how long it ran, in scenario seconds, as run.json records
  them (`load_started_at`, `scenario_seconds`); a run directory without them (older runs, hand-made ones)
  falls back to the first attempt's start and the last attempt's end. Every time axis counts from the start;
- goodput: usage total tokens of successful attempts per scenario minute of the duration;
- peak TPM (`peak_tpm`): the most usage tokens of successful attempts that started within any 60 s;
- TTFT: over successful streamed attempts only (a non-streamed answer has no first token before its last);
- verdict: the report's opening sentences, one per finding the scenario's `question.answered_by` names
  (`harness.report.verdict`), or the `outcomes` finding alone for a scenario without a question;
- run facts (`run`): `appid_on_trust` is true when the gateway counted or labelled callers by their token's
  `appid` claim without validating the token (no `gateway.auth.jwt`); `planned_duration_s` is the load the scenario planned (`run.duration`, or the end of
  stages that do not repeat); `cut_short_s` the planned scenario seconds that did not run, as run.json states
  it (`scenario_time_missing_s`, with `ended_by`) or else planned minus duration when that exceeds 1 s;
  `never_ended` is true when run.json says the run started but has no end (the process was killed before it
  could write one): the report then opens by saying the run was cut short;
  `gateway` the replicas, whether they share state, and the token limit per minute and its counter key;
  `shared_state_lost` (None when Redis never failed) counts the times a replica lost the Redis its shared state
  lives on, the replicas that did, and the decisions they made on their own counters meanwhile; its `lost_s`
  is the scenario seconds at least one replica was on its own (from its `lost` row to its `restored` one, or
  the end), and `by_app` each app's most tokens within 60 s ending at an attempt that started then, against
  the gateway's tokens-per-minute (`x_limit`); `shared_state_lost_s` is that `lost_s`, 0 for replicas that
  kept Redis throughout, None without Redis (what `checks: max_shared_state_lost_s` limits);
- splits (`by_app`, `by_client_profile`, `by_backend`, `by_replica`): the same attempt-level figures over each
  value's attempts, whose counts add up to the run's. Apps and client profiles are fixed per logical request,
  so they also get the request-level figures (finished requests, client failure rate, retries per request);
  a request's attempts can reach several backends and gateway replicas, so `by_backend` and `by_replica`
  leave those None. Attempts no backend answered (refused by the gateway, connection errors) are under
  `(none)`, as are attempts of a run with one gateway (no replica stated);
- Retry-After of an attempt: retry-after-ms / 1000 when present, else Retry-After;
- percentiles interpolate linearly between order statistics;
- a backend's `answered` and `rate_429` (`backends.<name>`): requests its own log shows it answered, and the
  share it answered with 429; gateway retries included, so a 429 the gateway retried on another member,
  which the client never saw, counts here (None without a backend log);
- PTU utilization of a backend (`backends.<name>.ptu_utilization`, percent of its PTU capacity, above 100
  in a burst): each PTU deployment's bucket level is rebuilt from the backend log over the duration. It
  starts at the deployment's `ptu_initial_utilization` (0 by default, or without scenario.yaml); at each
  admission decision (the row's `t`: PTU requests never queue) it is the logged `utilization`; when an answered (2xx) request ends (`t + duration_s`) its
  charge is corrected by `total_tokens - estimate_charged` (as a share of the capacity, PTUs x
  ptu_tokens_per_minute, floored at 0; left out without scenario.yaml, which gives the capacity); in
  between it drains at 100 % per scenario minute (the bucket holds one minute of its drain) down to 0.
  A backend's level is its PTU deployments' levels weighted by capacity (alike without scenario.yaml);
  the scenario's PTU deployments that no request reached only drain from where they started. `mean` is the time average of
  that level over the duration, `p95` the level it exceeded during 5 % of the duration. None for a
  backend with no utilization in the log (no PTU deployment, or no backend log);
- request-window lockout (`lockout`, from the backend log; None without one): `request_limit_429s` are the
  backends' 429s with decision `rate_limited_requests`; `with_tokens_free` those among them whose token
  window had room for the request (logged `remaining_tokens` >= the request's `estimate`; > 0 in a log
  without estimates): the request window alone refused them, e.g. because rejected requests count toward
  it (`count_rejected_requests`) and clients retried faster than it frees. `mean_tokens_free` is their
  mean `remaining_tokens`, `admitted` the requests the same deployments admitted; per deployment in
  `by_deployment` ("backend/deployment");
- cost (`cost`, in the scenario's `cost.currency`; None when no backend has a `cost`): per backend, `ptu`
  = PTUs of its PTU deployments x `ptu_per_hour` x the duration in hours (prepaid: used or not); `payg` =
  usage prompt tokens / 1000 x `prompt_per_1k` + usage completion tokens / 1000 x `completion_per_1k` over
  the successful attempts it served from its standard deployments (records: backend, deployment, usage;
  an attempt without usage adds nothing); `total` = ptu + payg. A backend without `cost` has None figures
  and adds nothing to the run's `total`; `per_1m_tokens` = total / goodput tokens x 1,000,000.

    >>> from harness.report.summary.build import summarize  # doctest: +SKIP
    >>> summary = summarize(load_run("reports/runs/quickstart"))  # doctest: +SKIP
    >>> summary["requests"]["client_failure_rate"]  # doctest: +SKIP
"""
