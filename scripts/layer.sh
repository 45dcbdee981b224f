#!/usr/bin/env bash
# Builds the les Lambda extension layers: dist/les-extension-x86_64.zip
# and dist/les-extension-arm64.zip, each holding extensions/les (a static
# Linux binary, no embedded stream server). Publish one with
#   aws lambda publish-layer-version --layer-name les \
#     --zip-file fileb://dist/les-extension-x86_64.zip --compatible-architectures x86_64
#
# Environment:
#   LES_LAYER_ARCHS  architectures to build (default "x86_64 arm64")
#   LES_LAYER_OUT    output directory (default dist)
#   LES_LAYER_KAFKA  1: link franz-go, the full Kafka client, instead of the small
#                    producer kafkalite (les-extension-kafka-<arch>.zip; about
#                    3 MB more, past the 10 MB budget: ADR 0005)
#   LES_VERSION      version string of the binary (default dev)
set -euo pipefail
cd "$(dirname "$0")/.."

# kinesislite: Kinesis without the SDK's client; nethttpomithttp2: net/http
# without its bundled HTTP/2 (0.55 MB; everything the extension speaks HTTP
# to takes HTTP/1.1). ADR 0005.
tags=kinesislite,nethttpomithttp2
suffix=
if [ "${LES_LAYER_KAFKA:-}" = 1 ]; then
  tags=$tags,les_kafka
  suffix=-kafka
fi
out=${LES_LAYER_OUT:-dist}
mkdir -p "$out"
for arch in ${LES_LAYER_ARCHS:-x86_64 arm64}; do
  case $arch in
    x86_64) goarch=amd64 ;;
    arm64) goarch=arm64 ;;
    *) echo "layer.sh: unknown architecture $arch (x86_64 or arm64)" >&2; exit 2 ;;
  esac
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  CGO_ENABLED=0 GOOS=linux GOARCH=$goarch go build -tags "$tags" -trimpath \
    -ldflags="-s -w -X main.version=${LES_VERSION:-dev}" -o "$tmp/les" ./cmd/les-extension
  zip="$out/les-extension$suffix-$arch.zip"
  go run ./scripts/layerzip "$zip" "extensions/les=$tmp/les"
  echo "$zip: extensions/les $(stat -c %s "$tmp/les") bytes (linux/$goarch)"
  rm -rf "$tmp"
  trap - EXIT
done
