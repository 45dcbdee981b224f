package e2e

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
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

// The load and the oracle shared by the rollup crash tests
// (TestRollupCrashSafety, TestRollupClaimCrash): !M distributions over
// HTTP and samples on a histogram_minute TCP port, both with explicit past
// timestamps; the truth is the rollup's input on the stream by record id,
// the result the rollup records (on the stream or in file sinks) by id.

// crashKills is the number of kills of a crash test: full, or short with
// -short; the environment variable env overrides both.
func crashKills(t *testing.T, env string, full, short int) int {
	t.Helper()
	kills := full
	if testing.Short() {
		kills = short
	}
	if s := os.Getenv(env); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			t.Fatalf("%s=%q: want a number of kills", env, s)
		}
		kills = n
	}
	return kills
}

// rollupLoad sends name+".latency" !M distributions to a les' HTTP intake
// and name+".sample" samples to its histogram_minute TCP port until stop
// closes, reconnecting after les was killed, and counts what it sent.
type rollupLoad struct {
	name             string
	httpURL, tcpAddr string                 // …/report?f=histogram; host:port
	pastTS           func(*rand.Rand) int64 // a sample's timestamp (s)
	httpSources      int                    // fn-0 … fn-(n-1) on the distributions
	tcpSources       int                    // and on the samples
	httpPause        int                    // ms: the pause after a request is minPause+rand(10)
	tcpPause         int                    // ms: after a TCP write minPause+rand(5)

	confirmed atomic.Int64 // centroid weight answered 2xx
	failed    atomic.Int64 // weight of requests that errored (may be in the stream)
	requests  atomic.Int64 // requests answered
	tcpSent   atomic.Int64 // lines written to a TCP socket (upper bound)
}

// run starts the two senders (seeded from seed) on wg.
func (ld *rollupLoad) run(wg *sync.WaitGroup, stop <-chan struct{}, seed uint64) {
	wg.Add(2)
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
				fmt.Fprintf(&body, "!M %d #%d %.3f #%d %.3f %s.latency source=fn-%d region=eu\n",
					ld.pastTS(r), w1, 1+r.Float64()*100, w2, 200+r.Float64()*50, ld.name, r.IntN(ld.httpSources))
			}
			resp, err := client.Post(ld.httpURL, "text/plain", &body)
			if err != nil {
				if !strings.Contains(err.Error(), "connection refused") {
					ld.failed.Add(weight)
				}
				time.Sleep(20 * time.Millisecond) // les is down: paces the retries
				continue
			}
			resp.Body.Close()
			ld.requests.Add(1)
			if resp.StatusCode/100 == 2 {
				ld.confirmed.Add(weight)
			} else {
				ld.failed.Add(weight)
			}
			time.Sleep(time.Duration(ld.httpPause+r.IntN(10)) * time.Millisecond) // paces the load
		}
	}()
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
				c, err := net.DialTimeout("tcp", ld.tcpAddr, time.Second)
				if err != nil {
					time.Sleep(20 * time.Millisecond) // les is down: paces the redials
					continue
				}
				conn = c
			}
			var buf bytes.Buffer
			n := 1 + r.IntN(20)
			for range n {
				fmt.Fprintf(&buf, "%s.sample %.3f %d source=fn-%d\n", ld.name, r.Float64()*1000, ld.pastTS(r), r.IntN(ld.tcpSources))
			}
			_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := conn.Write(buf.Bytes()); err != nil {
				conn.Close()
				conn = nil
				continue
			}
			ld.tcpSent.Add(int64(n))
			time.Sleep(time.Duration(ld.tcpPause+r.IntN(5)) * time.Millisecond) // paces the load
		}
	}()
}

// winKey is a metric's minute window (start in Unix seconds).
type winKey struct {
	name  string
	start int64
}

// ingestTruth is the rollup's input on the stream for a rollupLoad's
// names, each ingest record id counted once.
type ingestTruth struct {
	dist, samples float64 // !M centroid weight; samples
	ids, dups     int     // distinct ingest record ids; records under an id seen before
	byWin         map[winKey]float64
}

// accepted is the number of samples the rollup must count.
func (g ingestTruth) accepted() float64 { return g.dist + g.samples }

// readIngestTruth reads the rollup's input on the stream les l runs on.
// An id may be there more than once (a publish that timed out after the
// broker stored it, replayed from the spool) with the same content, and
// counts once; when dedups (the stream drops re-published ids) a second
// copy is an error.
func readIngestTruth(t *testing.T, l *Les, name string, dedups bool) ingestTruth {
	t.Helper()
	type inRec struct {
		at           string
		count, items float64
	}
	g := ingestTruth{byWin: map[winKey]float64{}}
	inIDs := map[string]inRec{}
	for _, rec := range readStream(t, l, stream.OriginAgg, wire.SignalDistributions, wire.SignalMetrics) {
		this := inRec{at: rec.Partition + "@" + string(rec.Pos), items: float64(len(rec.Batch.Dists) + len(rec.Batch.Metrics))}
		for _, d := range rec.Batch.Dists {
			this.count += d.Count
		}
		if first, ok := inIDs[rec.ID]; ok {
			g.dups++
			if dedups {
				t.Errorf("ingest record %s is on the stream twice (at %s and %s)", rec.ID, first.at, this.at)
			}
			if first.count != this.count || first.items != this.items {
				t.Errorf("ingest record id %s names two different records: %+v and %+v", rec.ID, first, this)
			}
			continue
		}
		inIDs[rec.ID] = this
		for _, d := range rec.Batch.Dists {
			if d.Name == name+".latency" {
				g.dist += d.Count
				g.byWin[winKey{d.Name, d.Timestamp / 60e9 * 60}] += d.Count
			}
		}
		for _, m := range rec.Batch.Metrics {
			if m.Name == name+".sample" && m.Kind == model.Sample {
				g.samples++
				g.byWin[winKey{m.Name, m.Timestamp / 60e9 * 60}]++
			}
		}
	}
	g.ids = len(inIDs)
	return g
}

// streamEmitted sums the counts of the rollup records on the stream for a
// rollupLoad's names, each record id once, and counts the records under an
// id seen before.
func streamEmitted(t *testing.T, l *Les, name string) (total float64, dups int) {
	t.Helper()
	seen := map[string]bool{}
	for _, rec := range readStream(t, l, stream.OriginRollup, wire.SignalDistributions) {
		if seen[rec.ID] {
			dups++
			continue
		}
		seen[rec.ID] = true
		for _, d := range rec.Batch.Dists {
			if d.Name == name+".latency" || d.Name == name+".sample" {
				total += d.Count
			}
		}
	}
	return total, dups
}

// untilStable calls read every 200 ms (the sinks are written by other
// processes) until it returns want and has not changed for 3 s, or
// deadline passes; it returns the last value and when it last changed.
func untilStable(want float64, deadline time.Time, read func() float64) (got float64, stableSince time.Time) {
	last, stableSince := -1.0, time.Now()
	for {
		got = read()
		if got != last {
			last, stableSince = got, time.Now()
		}
		if got == want && time.Since(stableSince) >= 3*time.Second || time.Now().After(deadline) {
			return got, stableSince
		}
		time.Sleep(200 * time.Millisecond)
	}
}
