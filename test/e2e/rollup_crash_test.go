package e2e

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

// TestRollupCrashSafety is DESIGN §6 "crash safety": under steady load, les
// is killed with SIGKILL at random moments and restarted; afterwards the
// sum of the counts of every emitted window (and correction), de-duplicated
// by record id, must equal the number of samples the stream accepted.
//
// The rollup consumer runs inside the les process, so kill -9 of les kills
// the agent, the embedded stream and the rollup consumer at once; there is
// no separate consumer process to kill. That is the harder case: the
// checkpoint, the outbox and the stream's de-duplication state all have to
// survive the same crash.
//
// Load (two kinds, counted exactly from the stream afterwards):
//   - POST /report?f=histogram with !M distribution lines of integer
//     centroid weights: a 2xx answer means durable, so the stream must hold
//     at least the confirmed weight (a request cut by the kill may or may
//     not have been published — that is why the stream is the truth);
//   - Wavefront sample lines with explicit timestamps on the histogram_minute
//     TCP port: TCP has no acknowledgement, so what the stream holds is what
//     was accepted.
//
// Timestamps lie 45–65 s in the past and grace is 10 s, so some samples
// land in open windows and some are late (corrections), and everything
// closes within about 25 s of the last sample. With -short
// the test kills 3 times; without it (as CI runs go test ./...) 20 times.
func TestRollupCrashSafety(t *testing.T) {
	kills := 20
	if testing.Short() {
		kills = 3
	}
	if s := os.Getenv("LES_CRASH_KILLS"); s != "" {
		kills, _ = strconv.Atoi(s)
	}
	l := NewLes(t, `
rollup: { grace: 10s, tick: 200ms }
sinks:
  - name: archive
    type: file
    signals: [distributions]
    file: { path: ./out.ndjson }
`)
	l.Start()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	var (
		stop          = make(chan struct{})
		wg            sync.WaitGroup
		httpConfirmed atomic.Int64 // centroid weight answered 2xx
		httpFailed    atomic.Int64 // weight of requests that errored (may be in the stream)
		httpRequests  atomic.Int64
		tcpSent       atomic.Int64 // lines written to a TCP socket (upper bound)
	)
	pastTS := func(r *rand.Rand) int64 { return time.Now().Unix() - 45 - r.Int64N(21) }

	// HTTP !M load.
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(seed, 2))
		client := &http.Client{Timeout: 5 * time.Second}
		for {
			select {
			case <-stop:
				return
			default:
			}
			var body bytes.Buffer
			weight := int64(0)
			for range 1 + r.IntN(8) {
				w1, w2 := 1+r.Int64N(5), 1+r.Int64N(3)
				weight += w1 + w2
				fmt.Fprintf(&body, "!M %d #%d %.3f #%d %.3f crash.latency source=fn-%d region=eu\n",
					pastTS(r), w1, 1+r.Float64()*100, w2, 200+r.Float64()*50, r.IntN(4))
			}
			resp, err := client.Post("http://"+l.Addr("http")+"/report?f=histogram", "text/plain", &body)
			if err != nil {
				if !strings.Contains(err.Error(), "connection refused") {
					httpFailed.Add(weight)
				}
				time.Sleep(20 * time.Millisecond)
				continue
			}
			resp.Body.Close()
			httpRequests.Add(1)
			if resp.StatusCode/100 == 2 {
				httpConfirmed.Add(weight)
			} else {
				httpFailed.Add(weight)
			}
			time.Sleep(time.Duration(r.IntN(10)) * time.Millisecond)
		}
	}()

	// TCP sample load on the histogram_minute port.
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(seed, 3))
		var conn net.Conn
		defer func() {
			if conn != nil {
				conn.Close()
			}
		}()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if conn == nil {
				c, err := net.DialTimeout("tcp", l.Addr("hist_minute"), time.Second)
				if err != nil {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				conn = c
			}
			var buf bytes.Buffer
			n := 1 + r.IntN(20)
			for range n {
				fmt.Fprintf(&buf, "crash.sample %.3f %d source=fn-%d\n", r.Float64()*1000, pastTS(r), r.IntN(3))
			}
			_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := conn.Write(buf.Bytes()); err != nil {
				conn.Close()
				conn = nil
				continue
			}
			tcpSent.Add(int64(n))
			time.Sleep(time.Duration(r.IntN(5)) * time.Millisecond)
		}
	}()

	start := time.Now()
	var killTimes []time.Duration
	outboxRe := regexp.MustCompile(`consumer=rollup from_seq=\d+ outbox=[1-9]`)
	outboxes, reclaims := 0, 0
	for i := range kills {
		// Random moments: sometimes right after start (during outbox
		// re-publish and replay), mostly while windows close and checkpoints
		// are written.
		d := time.Duration(rng.IntN(1200)) * time.Millisecond
		if rng.IntN(4) == 0 {
			d = time.Duration(rng.IntN(150)) * time.Millisecond
		}
		time.Sleep(d)
		killTimes = append(killTimes, d)
		l.Kill()
		l.Start()
		outboxes += len(outboxRe.FindAllString(l.Output(), -1))
		reclaims += strings.Count(l.Output(), "left unacknowledged")
		_ = i
	}
	time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
	close(stop)
	wg.Wait()
	loadFor := time.Since(start)

	// Emitted: the file sink's distributions de-duplicated by record id.
	sum := func(ds []distLine) (total float64, windows, corrections int) {
		for _, d := range ds {
			if d.Name != "crash.latency" && d.Name != "crash.sample" {
				continue
			}
			total += d.Count
			if d.Correction > 0 {
				corrections++
			} else {
				windows++
			}
		}
		return
	}
	out := filepath.Join(l.Dir, "out.ndjson")
	var emitted float64
	var windows, corrections, dupLines int
	// Wait until every window (and correction) has closed and reached the
	// file sink: the emitted total stops changing for a few ticks' worth
	// beyond grace.
	stopped := time.Now()
	deadline := stopped.Add(60 * time.Second)
	// The newest sample is at least 45 s old: its window closes at its end
	// plus grace (10 s) at the latest; a correction opened by the last late
	// sample closes grace after it (stopped + 10 s).
	lastClose := time.Unix((stopped.Unix()-45)/60*60+60+10, 0)
	last, stableSince := -1.0, time.Now()
	for time.Now().Before(deadline) {
		var ds []distLine
		ds, dupLines = fileSinkDists(t, out)
		emitted, windows, corrections = sum(ds)
		if emitted != last {
			last, stableSince = emitted, time.Now()
		}
		if time.Since(stableSince) >= 3*time.Second && time.Since(stopped) >= 13*time.Second &&
			time.Since(lastClose) >= 2*time.Second {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The truth: what the stream accepted from the agent.
	var acceptedDist, acceptedSamples float64
	type winKey struct {
		name  string
		start int64
	}
	inByWin := map[winKey]float64{}
	inIDs := map[string]uint64{}
	for _, rec := range readStream(t, l, stream.OriginAgg, wire.SignalDistributions, wire.SignalMetrics) {
		if s, ok := inIDs[rec.ID]; ok {
			t.Errorf("ingest record %s is on the stream twice (seq %d and %d)", rec.ID, s, rec.Seq)
		}
		inIDs[rec.ID] = rec.Seq
		for _, d := range rec.Batch.Dists {
			if d.Name == "crash.latency" {
				acceptedDist += d.Count
				inByWin[winKey{d.Name, d.Timestamp / 60e9 * 60}] += d.Count
			}
		}
		for _, m := range rec.Batch.Metrics {
			if m.Name == "crash.sample" && m.Kind == model.Sample {
				acceptedSamples++
				inByWin[winKey{m.Name, m.Timestamp / 60e9 * 60}]++
			}
		}
	}
	accepted := acceptedDist + acceptedSamples
	if acceptedDist < float64(httpConfirmed.Load()) {
		t.Errorf("stream holds distribution weight %v, but %d was confirmed with 2xx (lost after acknowledgement)", acceptedDist, httpConfirmed.Load())
	}
	if acceptedDist > float64(httpConfirmed.Load()+httpFailed.Load()) {
		t.Errorf("stream holds distribution weight %v, more than was ever sent (%d)", acceptedDist, httpConfirmed.Load()+httpFailed.Load())
	}
	if acceptedSamples > float64(tcpSent.Load()) {
		t.Errorf("stream holds %v samples, more than were sent (%d)", acceptedSamples, tcpSent.Load())
	}
	if accepted == 0 {
		t.Fatal("nothing was accepted")
	}

	// Second view: the rollup records on the stream, de-duplicated by id.
	var streamEmitted float64
	seen := map[string]bool{}
	streamDups := 0
	for _, rec := range readStream(t, l, stream.OriginRollup, wire.SignalDistributions) {
		if seen[rec.ID] {
			streamDups++
			continue
		}
		seen[rec.ID] = true
		for _, d := range rec.Batch.Dists {
			if d.Name == "crash.latency" || d.Name == "crash.sample" {
				streamEmitted += d.Count
			}
		}
	}

	t.Logf("kills %d at random delays %v over %v of load", kills, killTimes, loadFor.Round(time.Millisecond))
	t.Logf("accepted: %v samples (%v !M centroid weight from %d HTTP requests, %d confirmed + up to %d cut by kills; %v TCP samples of %d sent)",
		accepted, acceptedDist, httpRequests.Load(), httpConfirmed.Load(), httpFailed.Load(), acceptedSamples, tcpSent.Load())
	t.Logf("emitted (file sink, de-duplicated by record id): count %v in %d windows + %d corrections; %d duplicate lines skipped",
		emitted, windows, corrections, dupLines)
	t.Logf("emitted (rollup records on the stream, by id): count %v; %d duplicate records", streamEmitted, streamDups)
	t.Logf("restarts that re-published a checkpointed outbox: %d; that reclaimed unacknowledged sink deliveries: %d", outboxes, reclaims)
	t.Logf("les_rollup_late_samples_total %v", l.Metric("les_rollup_late_samples_total"))

	if emitted != accepted {
		var info []string
		for _, ln := range strings.Split(l.Output(), "\n") {
			if !strings.Contains(ln, "level=DEBUG") {
				info = append(info, ln)
			}
		}
		t.Logf("les output (last run):\n%s", lastLines(strings.Join(info, "\n"), 30))
		ds, _ := fileSinkDists(t, out)
		outByWin := map[winKey]float64{}
		for _, d := range ds {
			ts, _ := time.Parse(time.RFC3339Nano, d.Timestamp)
			outByWin[winKey{d.Name, ts.Unix()}] += d.Count
		}
		for k, v := range inByWin {
			if outByWin[k] != v {
				t.Logf("window %s %s: accepted %v, emitted %v", k.name, time.Unix(k.start, 0).UTC().Format(time.TimeOnly), v, outByWin[k])
			}
		}
		for k, v := range outByWin {
			if _, ok := inByWin[k]; !ok {
				t.Logf("window %s %s: accepted nothing, emitted %v", k.name, time.Unix(k.start, 0).UTC().Format(time.TimeOnly), v)
			}
		}
		t.Errorf("file sink: sum of emitted counts %v != accepted samples %v (diff %v)", emitted, accepted, emitted-accepted)
	}
	if streamEmitted != accepted {
		t.Errorf("stream: sum of emitted counts %v != accepted samples %v (diff %v)", streamEmitted, accepted, streamEmitted-accepted)
	}
	l.Stop()
}
