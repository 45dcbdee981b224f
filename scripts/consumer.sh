#!/usr/bin/env bash
# Builds the les consumer Lambda function: dist/les-consumer-<arch>.zip with
# one file, `bootstrap` (a static Linux binary of ./cmd/les-consumer), for
# the provided.al2023 (or provided.al2) runtime. Architectures: x86_64 and
# arm64 by default, or the ones given as arguments.
#
#   bash scripts/consumer.sh                 # dist/les-consumer-x86_64.zip, dist/les-consumer-arm64.zip
#   bash scripts/consumer.sh arm64           # only arm64
#   DIST=/tmp/out bash scripts/consumer.sh   # somewhere else
#
# Deploy: see internal/lambda/consumer/README.md.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dist="${DIST:-$root/dist}"
version="${VERSION:-$(git -C "$root" describe --tags --always --dirty 2>/dev/null || echo dev)}"
arches=("$@")
if [ ${#arches[@]} -eq 0 ]; then
	arches=(x86_64 arm64)
fi

mkdir -p "$dist"
for arch in "${arches[@]}"; do
	case "$arch" in
	x86_64 | amd64) arch=x86_64 goarch=amd64 ;;
	arm64 | aarch64) arch=arm64 goarch=arm64 ;;
	*)
		echo "consumer.sh: unknown architecture $arch (want x86_64 or arm64)" >&2
		exit 2
		;;
	esac
	work="$(mktemp -d)"
	trap 'rm -rf "$work"' EXIT
	(cd "$root" && CGO_ENABLED=0 GOOS=linux GOARCH="$goarch" go build -trimpath -buildvcs=false \
		-tags lambda.norpc -ldflags "-s -w -X main.version=$version" \
		-o "$work/bootstrap" ./cmd/les-consumer)
	zipfile="$dist/les-consumer-$arch.zip"
	rm -f "$zipfile"
	touch -d '2000-01-01T00:00:00Z' "$work/bootstrap" # same bytes in, same zip out
	if command -v zip >/dev/null; then
		(cd "$work" && zip -q -X "$zipfile" bootstrap)
	else
		(cd "$work" && python3 -c 'import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    z.write("bootstrap")' "$zipfile")
	fi
	size=$(stat -c %s "$work/bootstrap")
	echo "$zipfile: bootstrap $((size / 1024 / 1024)) MiB ($goarch, $version)"
	rm -rf "$work"
	trap - EXIT
done
