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

go mod download
go vet ./...
go test -count=1 -timeout 25m ./... "$@"
