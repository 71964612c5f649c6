#!/usr/bin/env bash
# Rebuild the committed example reports: one headless run of every shipped scenario (each at its own
# time scale and duration), keeping report.html, summary.json and the figures, plus the trip-duration sweep.
# Usage: reports/examples/regenerate.sh [gateway-replicas]   (from the repository root, in the project's
# virtualenv; with gateway-replicas, only that scenario's three-way comparison)
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
replicas_example() {
  local runs=() variant name
  for variant in "1-replica:gateway.replicas=1" "3-per-gateway:gateway.shared_state=none" \
      "3-on-redis:gateway.shared_state=redis"; do
    name=${variant%%:*}
    locust -f locustfiles/gateway.py --headless --only-summary --scenario scenarios/gateway-replicas.yaml \
      --set "${variant#*:}" --run-dir "$work/replicas/$name" > "$work/replicas-$name.out" 2>&1 || true
    runs+=("$work/replicas/$name")
  done
  harness compare "${runs[@]}" --out "$work/replicas/compare"
  cp "$work/replicas/compare"/compare.html "$work/replicas/compare"/*.png \
    reports/examples/gateway-replicas/
  sed -i "s#$work/replicas/##g" reports/examples/gateway-replicas/compare.html
}
if [ "${1:-}" = "gateway-replicas" ]; then  # the replicas comparison alone
  mkdir -p reports/examples/gateway-replicas
  replicas_example
  exit 0
fi
for scenario in scenarios/*.yaml; do
  name=$(basename "$scenario" .yaml)
  echo "== $name"
  # a run whose checks fail still has a report worth keeping
  locust -f locustfiles/gateway.py --headless --only-summary --scenario "$scenario" --run-dir "$work/$name" \
    > "$work/$name.out" 2>&1 || true
  mkdir -p "reports/examples/$name"
  cp "$work/$name"/{report.html,summary.json,*.png} "reports/examples/$name/"
done
echo "== gateway-replicas compared live: 1 replica, 3 with per-gateway state, 3 sharing state on Redis"
replicas_example
echo "== breaker-trip-duration sweep (the scenario's sweep block: 5 trip durations x 10 seeds, simulated),"
echo "   then the pick and the runner-up 3 times each, live (--confirm)"
harness sweep --scenario scenarios/breaker-trip-duration.yaml --confirm --no-fail --out "$work/sweep"
rm -rf reports/examples/breaker-trip-duration/compare*.png reports/examples/breaker-trip-duration/tradeoff_*.png \
  reports/examples/breaker-trip-duration/confirm-live
cp "$work/sweep"/compare.html "$work/sweep"/*.png "$work/sweep"/comparison.json reports/examples/breaker-trip-duration/
# of the live confirmation runs, each one's run.json is kept (its summary: every number the sweep re-checked)
for run in "$work/sweep"/confirm-live/*/seed-*; do
  kept="reports/examples/breaker-trip-duration/confirm-live/${run#"$work/sweep/confirm-live/"}"
  mkdir -p "$kept"
  cp "$run"/run.json "$kept/"
done
# the simulated runs themselves are not kept: their directories are named relative to the sweep's
sed -i "s#$work/sweep/##g" reports/examples/breaker-trip-duration/compare.html reports/examples/breaker-trip-duration/comparison.json
