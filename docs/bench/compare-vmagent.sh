#!/usr/bin/env bash
# Side by side: les and VictoriaMetrics' vmagent, each remote-writing the
# same generated load into its own fresh VictoriaMetrics (issue 9,
# Performance). Runs are interleaved (les, vmagent, les, vmagent, ...);
# each server is pinned to the same core, the generator and
# VictoriaMetrics to another.
#
#   LES=/tmp/les VMAGENT=/tmp/vmagent-bin/vmagent docs/bench/compare-vmagent.sh 50000 100000
#
# Arguments: offered rates in lines (= samples) per second (default 100000).
# Environment:
#   LES       les binary (default: les on PATH)
#   VMAGENT   vmagent binary, built from its public source outside this
#             module, e.g.
#             GOBIN=/tmp/vmagent-bin go install github.com/VictoriaMetrics/VictoriaMetrics/app/vmagent@v1.136.23
#   VM        victoria-metrics binary (default: Debian's /usr/bin/victoria-metrics)
#   CORE      core both servers are pinned to (default 1)
#   GEN_CORE  core the generator is pinned to (default 0)
#   VM_CORE   core(s) VictoriaMetrics is pinned to (default 0)
#   DURATION  send seconds per run (default 20); ROUNDS per rate (default 2)
#   SERIES    distinct series (default 10000); BLOCK lines per TCP write (default 100)
#   LES_COMPRESSION  les' agent.batch.compression (default auto: zstd)
#   LES_CONCURRENCY  the sink's requests in flight (default: the sink type's, 1)
#   LES_ARGS  more `les up` flags, e.g. "--cpuprofile /tmp/les.cpu" (each les run overwrites it)
#
# The load: one TCP connection from a generator (Python, below) sending a
# pre-generated Lambda-like mix (the series of `les bench`: 16 metric
# names, source fn-N, 3–6 tags) at a fixed rate, one gauge sample per
# line and no timestamps, so each server stamps on arrival (les: ms;
# vmagent's Influx parser: ms). The same series and values go to both:
#   les:     Wavefront   `aws.lambda.duration 12.5 source=fn-3 region=eu-west-1 ...`
#            → agent → embedded stream (every record written to disk first)
#            → prometheus_remote_write sink, rollup disabled (raw pass-through)
#   vmagent: Influx line protocol `aws.lambda.duration,source=fn-3,region=eu-west-1,... value=12.5`
#            (-influxListenAddr, -influxSkipSingleField) → remote write;
#            its on-disk queue is used only when VictoriaMetrics falls behind.
#
# What is measured, the same way for both: stored = the change in
# VictoriaMetrics' vm_rows_inserted_total{type="promremotewrite"}, and also
# a query of its API (sum(count_over_time({__name__=~".+"}[1h]))) for the
# samples it can read back; stored/s = stored over the time from the first
# line sent to the last change of the count (polled every 0.5 s); CPU = utime + stime of the
# server process (/proc/PID/stat) from just before the send until the count
# stops changing (3 s quiet), divided by the million samples stored; peak
# RSS = VmHWM.
set -euo pipefail

LES=${LES:-les}
VMAGENT=${VMAGENT:?set VMAGENT to a vmagent binary}
VM=${VM:-/usr/bin/victoria-metrics}
CORE=${CORE:-1}
GEN_CORE=${GEN_CORE:-0}
VM_CORE=${VM_CORE:-0}
DURATION=${DURATION:-20}
ROUNDS=${ROUNDS:-2}
SERIES=${SERIES:-10000}
BLOCK=${BLOCK:-100}
LES_COMPRESSION=${LES_COMPRESSION:-auto}
LES_CONCURRENCY=${LES_CONCURRENCY:-0}
RATES=("${@:-100000}")
VM_PORT=18428
LES_PORT=18878
VMAGENT_PORT=18889
work=$(mktemp -d)
cleanup() { # stop what a run left behind (run is in a subshell: its pids are in a file)
	if [ -f "$work/pids" ]; then
		while read -r p; do kill "$p" 2>/dev/null || true; done <"$work/pids"
	fi
	rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/les.yaml" <<EOF
log: { level: warn }
agent:
  listeners:
    - { format: wavefront, transport: tcp, address: 127.0.0.1:$LES_PORT }
  http: { listen: 127.0.0.1:18880 }
  batch: { flush_interval: 50ms, compression: $LES_COMPRESSION }
stream: { embedded: { listen: 127.0.0.1:18842 } }
rollup: { disabled: true }
sinks:
  - name: bench
    type: prometheus_remote_write
    concurrency: $LES_CONCURRENCY
    prometheus_remote_write: { url: "http://127.0.0.1:$VM_PORT/api/v1/write" }
EOF

cat >"$work/gen.py" <<'EOF'
# gen.py FORMAT HOST:PORT RATE SECONDS SERIES BLOCK: send lines over TCP at
# RATE lines/s; print {"lines_sent": n, "seconds": s, "start": unix time}.
import json, random, socket, sys, time

fmt, addr, rate, secs, nseries, block = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
names = [("aws.lambda.duration", "ms"), ("aws.lambda.billed_duration", "ms"), ("aws.lambda.init_duration", "ms"),
         ("aws.lambda.invocations", "c"), ("aws.lambda.errors", "c"), ("aws.lambda.throttles", "c"),
         ("aws.lambda.max_memory_used", "g"), ("aws.lambda.concurrent_executions", "g"), ("app.cart.items", "h"),
         ("app.cart.value", "d"), ("app.checkout.latency", "ms"), ("app.db.query_time", "ms"), ("app.cache.hits", "c"),
         ("app.cache.misses", "c"), ("app.http.requests", "c"), ("app.http.response_size", "h")]
regions = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2"]
runtimes = ["nodejs20.x", "python3.12", "go1.x", "java21", "provided.al2023"]
envs = ["prod", "staging", "dev"]
versions = ["1", "2", "3", "LATEST"]
routes = ["/cart", "/checkout", "/items", "/users", "/health", "/search"]
rng = random.Random(1)
series = []
for i in range(nseries):
    name, kind = names[i % len(names)]
    fn = i // len(names)
    tags = [("region", regions[fn % 5]), ("runtime", runtimes[(fn // 5) % 5]), ("env", envs[(fn // 25) % 3])]
    extra = rng.randrange(4)
    if extra > 0: tags.append(("version", versions[fn % 4]))
    if extra > 1: tags.append(("route", routes[i % 6]))
    if extra > 2: tags.append(("cold_start", "true" if fn % 7 == 0 else "false"))
    series.append((name, kind, "fn-%d" % fn, tags))

def value(kind):
    if kind == "c": return str(1 + rng.randrange(3))
    if kind == "g": return str(128 + rng.randrange(896))
    return "%.2f" % (int(rng.expovariate(1) * 2000) / 100)

def line(s, v):
    name, _, src, tags = s
    if fmt == "wavefront":
        return "%s %s source=%s %s" % (name, v, src, " ".join("%s=%s" % t for t in tags))
    return "%s,source=%s,%s value=%s" % (name, src, ",".join("%s=%s" % t for t in tags), v)

order = list(range(nseries))
rng.shuffle(order)
lines = [line(series[i], value(series[i][1])) for _ in range(max(1, 200000 // nseries)) for i in order]
blocks = [("\n".join(lines[j:j + block]) + "\n").encode() for j in range(0, len(lines) - block + 1, block)]
host, port = addr.rsplit(":", 1)
sock = socket.create_connection((host, int(port)))
interval = block / rate
start = time.time()
t0 = time.perf_counter()
end = t0 + secs
k = 0
while True:
    now = time.perf_counter()
    if now >= end:
        break
    due = t0 + k * interval
    if due > now:
        time.sleep(due - now)
    sock.sendall(blocks[k % len(blocks)])
    k += 1
elapsed = time.perf_counter() - t0
sock.close()
print(json.dumps({"lines_sent": k * block, "seconds": elapsed, "start": start}))
EOF

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; } # clock ticks
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; } # kB
listening() { # is something listening on TCP port $1?
	awk -v p=":$(printf '%04X' "$1")" 'NR > 1 && substr($2, length($2) - 4) == p && $4 == "0A" { f = 1 } END { exit !f }' /proc/net/tcp
}
wait_port() {
	for _ in $(seq 600); do
		listening "$1" && return 0
		sleep 0.05
	done
	echo "nothing listens on tcp port $1" >&2
	return 1
}
rows() { # samples VictoriaMetrics stored from remote write
	curl -sf "http://127.0.0.1:$VM_PORT/metrics" | awk '/^vm_rows_inserted_total\{type="promremotewrite"\}/ { print $2; f = 1 } END { if (!f) print 0 }'
}
readable() { # samples a query reads back
	curl -sf "http://127.0.0.1:$VM_PORT/api/v1/query" --data-urlencode 'query=sum(count_over_time({__name__=~".+"}[1h]))' |
		python3 -c 'import json, sys; r = json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)'
}

for p in $VM_PORT $LES_PORT $VMAGENT_PORT 18880 18842 18429; do
	if listening "$p"; then
		echo "tcp port $p is in use" >&2
		exit 1
	fi
done

run() { # run <server> <rate>: prints "offered stored stored_per_s readable cpu_s_per_M hwm_MB drain_s"
	local server=$1 rate=$2 vmpid pid port
	rm -rf "$work/vm" "$work/data" "$work/vmagent-q"
	taskset -c "$VM_CORE" "$VM" -storageDataPath="$work/vm" -httpListenAddr="127.0.0.1:$VM_PORT" \
		-search.disableCache -search.latencyOffset=0s -loggerLevel=WARN >"$work/vm.log" 2>&1 &
	vmpid=$!
	echo "$vmpid" >>"$work/pids"
	wait_port "$VM_PORT"
	if [ "$server" = les ]; then
		taskset -c "$CORE" "$LES" up --config "$work/les.yaml" --data-dir "$work/data" ${LES_ARGS:-} >"$work/les.log" 2>&1 &
		port=$LES_PORT
	else
		taskset -c "$CORE" "$VMAGENT" -influxListenAddr="127.0.0.1:$VMAGENT_PORT" -influxSkipSingleField \
			-httpListenAddr=127.0.0.1:18429 -remoteWrite.url="http://127.0.0.1:$VM_PORT/api/v1/write" \
			-remoteWrite.tmpDataPath="$work/vmagent-q" -loggerLevel=WARN >"$work/vmagent.log" 2>&1 &
		port=$VMAGENT_PORT
	fi
	pid=$!
	echo "$pid" >>"$work/pids"
	wait_port "$port"
	sleep 2 # start-up work is not counted
	local c0 r0 t0
	c0=$(cpu "$pid")
	r0=$(rows)
	t0=$(date +%s.%N)
	taskset -c "$GEN_CORE" python3 "$work/gen.py" "$([ "$server" = les ] && echo wavefront || echo influx)" \
		"127.0.0.1:$port" "$rate" "$DURATION" "$SERIES" "$BLOCK" >"$work/gen.json"
	local tsend last r tlast quiet=0
	tsend=$(date +%s.%N)
	last=$(rows)
	tlast=$tsend
	while [ "$quiet" -lt 6 ]; do # until the count has not moved for 3 s (at most 10 min)
		sleep 0.5
		r=$(rows)
		if [ "$r" != "$last" ]; then
			last=$r
			tlast=$(date +%s.%N)
			quiet=0
		else
			quiet=$((quiet + 1))
		fi
		if python3 -c "import sys; sys.exit(not ($(date +%s.%N) - $tsend > 600))"; then break; fi
	done
	local c1 h rb
	c1=$(cpu "$pid")
	h=$(hwm "$pid")
	sleep 2 # the last rows become searchable
	rb=$(readable)
	kill -INT "$pid"
	wait "$pid" || true
	kill "$vmpid"
	wait "$vmpid" || true
	: >"$work/pids" # both have exited: forget their pids
	python3 - "$work/gen.json" "$c0" "$c1" "$r0" "$last" "$rb" "$h" "$t0" "$tsend" "$tlast" "$(getconf CLK_TCK)" <<'EOF'
import json, sys
g = json.load(open(sys.argv[1]))
c0, c1, r0, r1, rb, h, t0, tsend, tlast, hz = (float(x) for x in sys.argv[2:])
stored = r1 - r0
print(f'{g["lines_sent"] / g["seconds"]:.0f} {stored:.0f} {stored / (tlast - g["start"]):.0f} {rb:.0f} '
      f'{(c1 - c0) / hz / max(stored / 1e6, 1e-9):.2f} {h / 1000:.0f} {max(tlast - tsend, 0):.1f} {g["lines_sent"]}')
EOF
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs; $DURATION s per run, $SERIES series"
printf '%-8s %-8s %-3s %10s %10s %10s %10s %9s %7s %8s %8s\n' rate server rnd offered/s sent stored stored/s readable "CPU s/M" "RSS MB" drain
for rate in "${RATES[@]}"; do
	for round in $(seq "$ROUNDS"); do
		for server in les vmagent; do
			read -r off st sps rb c h d sent < <(run "$server" "$rate")
			printf '%-8s %-8s %-3s %10s %10s %10s %10s %9s %7s %8s %8s\n' "$rate" "$server" "$round" "$off" "$sent" "$st" "$sps" "$rb" "$c" "$h" "${d}s"
		done
	done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
