package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStatsDRollup sends StatsD/DogStatsD over UDP and over a unix
// datagram socket and checks the aggregates the rollup emits when the
// minute closes (les tail --origin rollup and /query), the logs made of
// events and service checks, and the unix socket's handling of a stale
// socket file (left by kill -9) and of oversized datagrams.
func TestStatsDRollup(t *testing.T) {
	t.Parallel()
	l := NewLes(t, `
rollup: { grace: 1s, tick: 200ms }
`)
	sock := filepath.Join(l.Dir, "statsd.sock")
	udpLine := "    - { format: statsd, transport: udp, address: " + l.Addr("statsd") + " }\n"
	if !strings.Contains(l.Config, udpLine) {
		t.Fatalf("harness config changed; no statsd udp line in:\n%s", l.Config)
	}
	l.Config = strings.Replace(l.Config, udpLine, udpLine+"    - { format: statsd, transport: unixgram, address: "+sock+" }\n", 1)
	l.Start()

	// kill -9 leaves the socket file behind; the next start must remove it.
	l.Kill()
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("socket file after kill -9: %v", err)
	}
	l.Start()

	udp := l.Addr("statsd")
	sendDatagrams(t, "udp", udp,
		// several metrics per datagram; sample rate scales the counter
		"st.req:1|c|@0.5|#env:prod,fn:a\nst.req:2|c|#env:prod,fn:a\nst.gauge:10|g|#env:prod\nst.gauge:+5|g|#env:prod\nst.gauge:-3|g|#env:prod",
		// sets count distinct members
		"st.users:alice|s\nst.users:bob|s",
		"st.users:alice|s",
		// timers (with a sample rate: 2 copies; packed values), histograms, distributions
		"st.lat:100|ms|#env:prod\nst.lat:200|ms|@0.5|#env:prod\nst.lat:300:400|ms|#env:prod",
		"st.hist:5|h\nst.dist:7|d|#env:prod,team:core",
		// DogStatsD event and service check become logs
		"_e{9,11}:deploy ok|version 1.2|t:warning|#env:prod",
		"_sc|st.check|2|#env:prod|m:disk full",
		// bad lines are rejected with a reason, the rest of the datagram counts
		"st.bad:x|c\nst.req:1|c|#env:prod,fn:a\nst.unknown:1|zz",
	)
	sendDatagrams(t, "unixgram", sock, "st.unix:3|c\nst.unix.lat:42|ms", "st.unix:4|c")
	// > 64 KiB over the unix socket: rejected as one datagram_too_large
	big := strings.Repeat("st.big:1|c\n", 70<<10/11)
	sendDatagrams(t, "unixgram", sock, big)

	// The UDP and unixgram listeners read on their own: wait for the
	// rejections of both (each counted once), not only the last sent.
	waitFor(t, 60*time.Second, "datagram_too_large, invalid_value and unknown_type", func() bool {
		return l.Metric(`les_ingest_rejected_total{format="statsd",reason="datagram_too_large"}`) == 1 &&
			l.Metric(`les_ingest_rejected_total{format="statsd",reason="invalid_value"}`) >= 1 &&
			l.Metric(`les_ingest_rejected_total{format="statsd",reason="unknown_type"}`) >= 1
	})
	if v := l.Metric(`les_ingest_rejected_total{format="statsd",reason="invalid_value"}`); v != 1 {
		t.Errorf("invalid_value rejects = %v, want 1", v)
	}
	if v := l.Metric(`les_ingest_rejected_total{format="statsd",reason="unknown_type"}`); v != 1 {
		t.Errorf("unknown_type rejects = %v, want 1", v)
	}

	// Events and service checks are log records on the stream.
	var logs []distLine
	waitFor(t, 60*time.Second, "event and service check logs", func() bool {
		logs = parseDistLines(t, tailFor(t, l, 2*time.Second, "tail", "--url", "nats://"+l.Addr("nats"), "--data-dir", filepath.Join(l.Dir, "data"), "--from-start", "--logs"))
		return len(logs) >= 2
	})
	var sawEvent, sawCheck bool
	for _, lg := range logs {
		if lg.Message == "version 1.2" && strings.EqualFold(lg.Level, "warning") {
			sawEvent = true
		}
		if lg.Message == "disk full" && strings.EqualFold(lg.Level, "critical") {
			sawCheck = true
		}
	}
	if !sawEvent || !sawCheck {
		t.Errorf("event %v, service check %v in logs: %+v", sawEvent, sawCheck, logs)
	}

	// Aggregates arrive when the minute closes.
	var items map[string][]distLine
	waitFor(t, untilMinuteCloses(), "rolled-up StatsD aggregates", func() bool {
		items = rollupItems(t, l)
		for _, n := range []string{"st.req", "st.gauge", "st.users", "st.lat", "st.hist", "st.dist", "st.unix", "st.unix.lat"} {
			if len(items[n]) == 0 {
				return false
			}
		}
		return true
	})
	// Everything above was sent within one second, so at most two minutes
	// are involved; sum over windows to be independent of the boundary.
	total := func(name string, f func(d distLine) float64) float64 {
		var s float64
		for _, d := range items[name] {
			s += f(d)
		}
		return s
	}
	value := func(d distLine) float64 { return d.Value }
	count := func(d distLine) float64 { return d.Count }
	if v := total("st.req", value); v != 5 {
		t.Errorf("st.req counter sum = %v, want 1/0.5 + 2 + 1 = 5: %+v", v, items["st.req"])
	}
	// StatsD gauges are aggregated: the last value of the window; no raw
	// copy reaches sinks. The listener has the default flavor, dogstatsd,
	// where a signed value is the value (10, +5, -3 → -3); flavor: etsy
	// would apply them as deltas (internal/format/statsd TestClientBytes).
	if g := items["st.gauge"]; len(g) != 1 || g[0].Value != -3 || g[0].Kind != "gauge" {
		t.Errorf("st.gauge = %+v, want one rolled-up gauge, the last value -3", g)
	}
	if v := total("st.users", value); v != 2 || len(items["st.users"]) != 1 {
		t.Errorf("st.users distinct = %+v, want 2", items["st.users"])
	}
	if c := total("st.lat", count); c != 5 {
		t.Errorf("st.lat count = %v, want 5 (1 + 2 for @0.5 + 2 packed)", c)
	}
	lat := items["st.lat"][0]
	if lat.Min != 100 || lat.Max != 400 || lat.Tags["env"] != "prod" || lat.Window != "minute" || lat.Percentiles["p50"] == 0 {
		t.Errorf("st.lat = %+v", lat)
	}
	if c := total("st.hist", count); c != 1 {
		t.Errorf("st.hist count = %v", c)
	}
	if d := items["st.dist"][0]; d.Count != 1 || d.Min != 7 || d.Tags["team"] != "core" {
		t.Errorf("st.dist = %+v", d)
	}
	if v := total("st.unix", value); v != 7 {
		t.Errorf("st.unix (unix socket) counter = %v, want 7", v)
	}
	if d := items["st.unix.lat"][0]; d.Count != 1 || d.Max != 42 {
		t.Errorf("st.unix.lat = %+v", d)
	}
	if _, ok := items["st.big"]; ok {
		t.Errorf("lines of the oversized datagram were accepted: %+v", items["st.big"])
	}

	// The same windows through the HTTP API.
	// (/query's history reads the rollup's records back from the stream:
	// it may be a moment behind the file sink.)
	var q []distLine
	var qc float64
	waitFor(t, 10*time.Second, "st.lat in /query", func() bool {
		q, qc = queryAPI(t, l, "st.lat", "", "minute"), 0
		for _, d := range q {
			qc += d.Count
		}
		return qc == 5
	})
	if qc != 5 {
		t.Errorf("/query st.lat: count %v, want 5: %+v", qc, q)
	}
	if q := queryAPI(t, l, "no.such.series", "", ""); len(q) != 0 {
		t.Errorf("/query of an unknown series: %+v", q)
	}
	l.Stop()
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket file after a clean stop: %v", err)
	}
}
