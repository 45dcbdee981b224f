#!/usr/bin/env bash
# The test command of the README: installs what the tests need, then runs
# every Go test (unit, fuzz seed corpora, and the end-to-end tests that
# build les and drive it over real sockets).
set -euo pipefail
cd "$(dirname "$0")/.."

# The Node example consumer is tested against a real stream; it needs its
# one npm dependency (pinned in package-lock.json).
if command -v npm >/dev/null 2>&1; then
  (cd examples/node-consumer && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  # kinesalite, the Kinesis-compatible server of the Kinesis input tests.
  (cd test/kinesalite && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
else
  echo "npm not found: the Node example consumer and Kinesis input tests will be skipped" >&2
fi

# Real backends the sink tests deliver to and query back (Debian's
# packages): Prometheus and VictoriaMetrics (remote write, Datadog and
# InfluxDB endpoints), InfluxDB 1.x (line protocol).
need=()
for p in prometheus:prometheus victoria-metrics:victoria-metrics influxd:influxdb; do
  command -v "${p%%:*}" >/dev/null 2>&1 || need+=("${p##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}") >/dev/null 2>&1 ||
      echo "could not install ${need[*]}: their sink tests will fail under CI" >&2
  else
    echo "not root: install ${need[*]} for the sink tests" >&2
  fi
fi

go mod download
go vet ./...
go test -count=1 -timeout 25m ./... "$@"
