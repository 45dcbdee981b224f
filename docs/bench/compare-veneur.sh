#!/usr/bin/env bash
# Side by side: les and Stripe's Veneur on the same generated StatsD load,
# each server pinned to the same core, the generator to another, runs
# interleaved (les, veneur, les, veneur, ...), and the ratios printed.
#
#   go build -tags grpcnotrace -o /tmp/les ./cmd/les   (as the README builds it)
#   LES=/tmp/les VENEUR=/tmp/veneur-bin/veneur docs/bench/compare-veneur.sh 200000 1000000
#
# Arguments: offered rates in lines/s (default 200000). Environment:
#   LES       les binary (default: les on PATH); it is also the generator
#             (`les bench --metrics-url none`: generator only)
#   VENEUR    veneur binary, built from its public source
#             (github.com/stripe/veneur, cmd/veneur), e.g. into a temp GOBIN
#   CORE      core both servers are pinned to (default 1)
#   GEN_CORE  core the generator is pinned to (default 0)
#   DURATION  send time per run (default 20s); ROUNDS per rate (default 2)
#   SERIES    distinct series (default 1000); LINES per datagram (default 31)
#   LES_COMPRESSION  les' agent.batch.compression (default auto: s2 here)
#   LES_B     a second les binary (e.g. the previous commit's), run as server
#             "les_b" between les and veneur in every round: a before/after
#             on the same load; LES_B_COMPRESSION its compression (default
#             LES_COMPRESSION), so LES_B=$LES compares two settings
#
# What is measured, the same way for both: CPU = utime + stime of the server
# process (/proc/PID/stat) from before the send to 3 s after it; loss = the
# kernel's drops on the server's UDP port(s) (/proc/net/udp) × lines per
# datagram / lines sent; peak RSS = VmHWM, and the peaks of its two parts
# sampled every 0.25 s: anonymous memory (heap, stacks) and file pages (the
# mapped binary: a larger binary holds more pages resident). les runs with its embedded stream,
# the rollup (its default) and a discard sink: every line is written to the
# durable stream. Veneur aggregates in memory and flushes every 10 s to a
# localfile sink writing to /dev/null.
set -euo pipefail

LES=${LES:-les}
VENEUR=${VENEUR:?set VENEUR to a veneur binary}
CORE=${CORE:-1}
GEN_CORE=${GEN_CORE:-0}
DURATION=${DURATION:-20s}
ROUNDS=${ROUNDS:-2}
SERIES=${SERIES:-1000}
LINES=${LINES:-31}
LES_COMPRESSION=${LES_COMPRESSION:-auto}
RATES=("${@:-200000}")
LES_PORT=18135
VENEUR_PORT=18136
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat >"$work/les.yaml" <<EOF
agent:
  http: { listen: 127.0.0.1:18180 }
  batch: { compression: $LES_COMPRESSION }
  listeners:
    - { format: statsd, transport: udp, address: 127.0.0.1:$LES_PORT }
stream:
  embedded: { listen: 127.0.0.1:18142 }
sinks:
  - name: bench
    type: discard
    signals: [distributions]
EOF
sed "s/compression: $LES_COMPRESSION/compression: ${LES_B_COMPRESSION:-$LES_COMPRESSION}/" "$work/les.yaml" >"$work/les_b.yaml"
cat >"$work/veneur.yaml" <<EOF
statsd_listen_addresses: [ "udp://127.0.0.1:$VENEUR_PORT" ]
interval: "10s"
http_address: "127.0.0.1:18137"
grpc_address: "127.0.0.1:18138"
stats_address: "127.0.0.1:18139"
hostname: "bench"
num_readers: 1
read_buffer_size_bytes: 16777216
metric_sinks:
  - kind: localfile
    name: devnull
    config: { flush_file: /dev/null }
EOF

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; } # clock ticks
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; } # kB
# peaks <pid> <out>: the peak RssAnon and RssFile (kB) of pid, sampled every
# 0.25 s on the generator's core until <out>.stop exists, written to <out>.
# VmHWM is their peak sum; the split tells the heap from the binary's pages.
peaks() {
	local a=0 f=0 x y
	while [ ! -e "$2.stop" ] && read -r x y < <(awk '/RssAnon/ {a = $2} /RssFile/ {f = $2} END {print a + 0, f + 0}' "/proc/$1/status" 2>/dev/null); do
		[ "$x" -gt "$a" ] && a=$x
		[ "$y" -gt "$f" ] && f=$y
		sleep 0.25
	done
	echo "$a $f" >"$2"
}
drops() { # sum of the drops column of every UDP socket bound to port $1
	local hex
	hex=$(printf '%04X' "$1")
	awk -v p=":$hex" 'NR > 1 && substr($2, length($2) - 4) == p { d += $NF } END { print d + 0 }' /proc/net/udp
}
wait_port() {
	for _ in $(seq 200); do
		[ "$(awk -v p=":$(printf '%04X' "$1")" 'NR > 1 && substr($2, length($2) - 4) == p' /proc/net/udp | wc -l)" -gt 0 ] && return 0
		sleep 0.05
	done
	echo "nothing listens on udp port $1" >&2
	return 1
}

run() { # run <server> <rate>: prints "cpu_s_per_M loss_pct hwm_MB sent anon_MB file_MB"
	local server=$1 rate=$2 pid port
	if [ "$server" = les ] || [ "$server" = les_b ]; then
		local bin=$LES cfg=$work/les.yaml
		[ "$server" = les_b ] && bin=$LES_B cfg=$work/les_b.yaml
		rm -rf "$work/data"
		taskset -c "$CORE" "$bin" up --config "$cfg" --data-dir "$work/data" >"$work/les.log" 2>&1 &
		port=$LES_PORT
	else
		taskset -c "$CORE" "$VENEUR" -f "$work/veneur.yaml" >"$work/veneur.log" 2>&1 &
		port=$VENEUR_PORT
	fi
	pid=$!
	wait_port "$port"
	sleep 2 # start-up work is not counted
	local c0 d0
	rm -f "$work/peaks" "$work/peaks.stop"
	peaks "$pid" "$work/peaks" &
	local sampler=$!
	taskset -pc "$GEN_CORE" "$sampler" >/dev/null
	c0=$(cpu "$pid")
	d0=$(drops "$port")
	taskset -c "$GEN_CORE" "$LES" bench --format statsd --series "$SERIES" --rate "$rate" --duration "$DURATION" \
		--lines-per-datagram "$LINES" --addr "127.0.0.1:$port" --metrics-url none --json --quiet >"$work/gen.json"
	sleep 3 # let the server finish what it received
	local c1 d1 h
	c1=$(cpu "$pid")
	d1=$(drops "$port")
	h=$(hwm "$pid")
	touch "$work/peaks.stop"
	wait "$sampler"
	kill -INT "$pid"
	wait "$pid" || true
	python3 - "$work/gen.json" "$c0" "$c1" "$d0" "$d1" "$h" "$(getconf CLK_TCK)" $(cat "$work/peaks") <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
c0, c1, d0, d1, h, hz, anon, file = (float(x) for x in sys.argv[2:])
sent, dgrams = r["lines_sent"], r["datagrams_sent"]
per = sent / dgrams if dgrams else 0
lost = (d1 - d0) * per
got = max(sent - lost, 1)
print(f"{(c1 - c0) / hz / (got / 1e6):.3f} {100 * lost / sent:.3f} {h / 1000:.0f} {sent} {anon / 1000:.0f} {file / 1000:.0f}")
EOF
}

printf '%-9s %-6s %-5s %12s %10s %9s %12s %8s %8s\n' rate server round "CPU s / M" "loss %" "RSS MB" "lines sent" "anon MB" "file MB"
for rate in "${RATES[@]}"; do
	declare -A sum=()
	for round in $(seq "$ROUNDS"); do
		servers=(les veneur)
		[ -n "${LES_B:-}" ] && servers=(les les_b veneur)
		for server in "${servers[@]}"; do
			read -r c l h s a f < <(run "$server" "$rate")
			printf '%-9s %-6s %-5s %12s %10s %9s %12s %8s %8s\n' "$rate" "$server" "$round" "$c" "$l" "$h" "$s" "$a" "$f"
			sum[$server.cpu]=$(python3 -c "print(${sum[$server.cpu]:-0} + $c)")
			sum[$server.rss]=$(python3 -c "print(max(${sum[$server.rss]:-0}, $h))")
			sum[$server.anon]=$(python3 -c "print(max(${sum[$server.anon]:-0}, $a))")
		done
	done
	python3 -c "
lc, vc = ${sum[les.cpu]} / $ROUNDS, ${sum[veneur.cpu]} / $ROUNDS
print(f'$rate lines/s: les {lc:.3f} vs veneur {vc:.3f} CPU s / M lines, ratio les/veneur {lc / vc:.2f}; peak RSS {${sum[les.rss]}:.0f} vs {${sum[veneur.rss]}:.0f} MB, ratio {${sum[les.rss]} / ${sum[veneur.rss]}:.2f}; anonymous {${sum[les.anon]}:.0f} vs {${sum[veneur.anon]}:.0f} MB')"
	[ -n "${LES_B:-}" ] && python3 -c "
bc, vc = ${sum[les_b.cpu]:-0} / $ROUNDS, ${sum[veneur.cpu]} / $ROUNDS
print(f'$rate lines/s: les_b {bc:.3f} CPU s / M lines, ratio les_b/veneur {bc / vc:.2f}; peak RSS {${sum[les_b.rss]:-0}:.0f} MB')"
	unset sum
done
