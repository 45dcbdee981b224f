#!/usr/bin/env bash
# The test command of the README: installs what the tests need, then runs
# every Go test (unit, fuzz seed corpora, and the end-to-end tests that
# build les and drive it over real sockets). As root it installs what is
# missing with apt-get; under CI (CI set) anything still missing fails the
# run here, and the tests that need it fail too instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

# missing reports a component that is not there: fatal under CI, a warning
# (its tests skip) otherwise.
missing() {
  if [ -n "${CI:-}" ]; then
    echo "test.sh: $* (CI: failing instead of skipping its tests)" >&2
    exit 1
  fi
  echo "test.sh: $*: the tests that need it will be skipped" >&2
}

apt_updated=
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "test.sh: not root: cannot install $*" >&2
    return 1
  fi
  if [ -z "$apt_updated" ]; then
    apt-get update -qq >/dev/null 2>&1 || true
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1
}

# Node.js: the example consumer, the example Lambda function and kinesalite
# (the Kinesis-compatible server of the Kinesis tests). Each npm project
# pins its packages in package-lock.json.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt_install nodejs npm || true
fi
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  for d in examples/node-consumer test/kinesalite; do
    (cd "$d" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || missing "npm ci in $d failed"
  done
else
  missing "node and npm are not installed (apt-get install nodejs npm)"
fi

# The README test (cmd/les/readme_test.go) runs the README's commands with
# bash, curl and python3 inside a private network namespace (unshare, ip).
for p in curl:curl python3:python3 unshare:util-linux ip:iproute2; do
  command -v "${p%%:*}" >/dev/null 2>&1 || apt_install "${p##*:}" || missing "${p%%:*} is not installed (apt-get install ${p##*:})"
done

# Real backends the sink tests deliver to and query back (Debian's
# packages): Prometheus and VictoriaMetrics (remote write, Datadog and
# InfluxDB endpoints), InfluxDB 1.x (line protocol); chromium (headless)
# for the web UI's browser test (internal/app/ui_browser_test.go).
need=()
for p in prometheus:prometheus victoria-metrics:victoria-metrics influxd:influxdb chromium:chromium; do
  command -v "${p%%:*}" >/dev/null 2>&1 || need+=("${p##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  apt_install "${need[@]}" || missing "could not install ${need[*]}"
fi

go mod download
go vet ./...
go test -count=1 -timeout 25m ./... "$@"
