"""Everything Locust-side except the thin locustfile: users, shape and ramp, embedded stack, the run's start and
end. What the simulator shares with it (request plans, arrivals, the attempt loop, the run directory) is in
`harness.workload`.

Runs under gevent: nothing here imports the asyncio servers (`harness.mock`, `harness.gateway`,
`harness.serve`); the embedded stack is a separate process started with `harness serve`.
"""
