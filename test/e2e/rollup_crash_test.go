package e2e

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

// TestRollupCrashSafety is DESIGN §6 "crash safety": under steady load, les
// is killed with SIGKILL at random moments and restarted; afterwards the
// sum of the counts of every emitted window (and correction), de-duplicated
// by record id, must equal the number of samples the stream accepted.
//
// It runs on three stream backends:
//   - embedded: the stream runs inside les, so kill -9 of les kills the
//     agent, the stream and the rollup consumer at once; there is no
//     separate consumer process to kill. That is the harder case: the
//     checkpoint, the outbox and the stream's de-duplication state all
//     have to survive the same crash.
//   - kafka: a kfake cluster in the test process (it survives les), 4
//     partitions; sinks keep their cursors in consumer groups.
//   - kinesis: kinesalite, a 2-shard stream carrying 4 logical partitions;
//     sinks keep their positions in files.
//
// Kafka and Kinesis do not drop re-published record ids (Capabilities
// DedupWindow 0): an ingest record whose publish timed out after the broker
// stored it is stored again when the agent replays its spool. There the
// truth counts each ingest record id once, and the rollup must have folded
// it in once (it de-duplicates by record id in its checkpoint). Kills alone
// rarely leave such a copy, so halfway through the test re-publishes 20
// stored ingest records itself, unchanged and under their ids: the
// embedded stream must drop them, on Kafka and Kinesis they must be on the
// stream twice and count once.
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
// closes within about 25 s of the last sample. With -short the test kills
// 3 times per backend; without it (as CI runs go test ./...) 20 times;
// LES_CRASH_KILLS overrides both. When the counts disagree, the last run's
// whole output (debug log included) is written to $LES_E2E_OUTPUT_DIR if
// set.
func TestRollupCrashSafety(t *testing.T) {
	kills := crashKills(t, "LES_CRASH_KILLS", 20, 3)
	t.Run("embedded", func(t *testing.T) { rollupCrash(t, embeddedBackend(), kills) })
	t.Run("kafka", func(t *testing.T) {
		// Each restart is the same consumer coming back, as a supervised
		// les consume would: with static membership (stream.kafka.
		// instance_id, the setting the kafka README recommends for that)
		// its sink partitions return at once instead of after the killed
		// member's session timeout. Without it, one CI run ended with the
		// killed member still owning a partition of the sink's group.
		b := kafkaBackend(t)
		b.yaml = strings.Replace(b.yaml, "kafka: { brokers: [", "kafka: { instance_id: rollup-crash, brokers: [", 1)
		rollupCrash(t, b, kills)
	})
	t.Run("kinesis", func(t *testing.T) { rollupCrash(t, kinesisBackend(t), kills) })
}

// rollupCrash is TestRollupCrashSafety's body on backend b.
func rollupCrash(t *testing.T, b *streamBackend, kills int) {
	began := time.Now()
	l := NewLes(t, `
rollup: { grace: 10s, tick: 200ms }
sinks:
  - name: archive
    type: file
    signals: [distributions]
    file: { path: ./out.ndjson }
`)
	b.Configure(t, l)
	l.Start()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	load := &rollupLoad{
		name:        "crash",
		httpURL:     "http://" + l.Addr("http") + "/report?f=histogram",
		tcpAddr:     l.Addr("hist_minute"),
		pastTS:      func(r *rand.Rand) int64 { return time.Now().Unix() - 45 - r.Int64N(21) },
		httpSources: 4, tcpSources: 3,
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	load.run(&wg, stop, seed)

	start := time.Now()
	var killTimes []time.Duration
	outboxRe := regexp.MustCompile(`consumer=rollup positions=\d+ outbox=[1-9]`)
	dupRe := regexp.MustCompile(`(?m)^les_consumer_duplicate_records_total\{consumer="rollup"\} (\d+)`)
	outboxes, reclaims, rollupDups := 0, 0, 0
	// tally counts what one run of les logged and, scraped just before it
	// was killed, how many re-published records its rollup dropped.
	tally := func(metrics string) {
		outboxes += len(outboxRe.FindAllString(l.Output(), -1))
		reclaims += strings.Count(l.Output(), "left unacknowledged")
		if m := dupRe.FindStringSubmatch(metrics); m != nil {
			n, _ := strconv.Atoi(m[1])
			rollupDups += n
		}
	}
	replayed := 0
	for i := range kills {
		if i == kills/2 {
			// Halfway, replay a few records the stream already holds, as an
			// agent does whose publish timed out after the stream stored
			// it: streams that de-duplicate drop them, on the others the
			// rollup must.
			recs := readStream(t, l, stream.OriginAgg, wire.SignalDistributions, wire.SignalMetrics)
			rng.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
			recs = recs[:min(len(recs), 20)]
			republish(t, l, recs)
			replayed = len(recs)
		}
		// Random moments: sometimes right after start (during outbox
		// re-publish and replay), mostly while windows close and checkpoints
		// are written.
		d := time.Duration(rng.IntN(1200)) * time.Millisecond
		if rng.IntN(4) == 0 {
			d = time.Duration(rng.IntN(150)) * time.Millisecond
		}
		time.Sleep(d)
		killTimes = append(killTimes, d)
		m := scrapeMetrics(l)
		l.Kill()
		tally(m)
		l.Start()
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
	var windows, corrections, dupLines int
	// Every window (and correction) closes in the rollup by: the newest
	// sample is at least 45 s old, so its window closes at its end plus
	// grace (10 s) at the latest; a correction opened by the last late
	// sample closes grace after it (stopped + 10 s). By then the agent has
	// long published what it accepted (spool replays included).
	stopped := time.Now()
	lastClose := time.Unix((stopped.Unix()-45)/60*60+60+10, 0)
	closed := func() bool {
		return time.Since(stopped) >= 13*time.Second && time.Since(lastClose) >= 2*time.Second
	}
	for !closed() {
		time.Sleep(200 * time.Millisecond)
	}

	// The truth: what the stream accepted from the agent.
	dedups := streamDedups(t, l)
	truth := readIngestTruth(t, l, "crash", dedups)
	acceptedDist, acceptedSamples, inByWin, inDups := truth.dist, truth.samples, truth.byWin, truth.dups
	accepted := truth.accepted()
	if !dedups && inDups < replayed {
		t.Errorf("%d duplicate ingest ids on the stream, but the test re-published %d records", inDups, replayed)
	}
	if acceptedDist < float64(load.confirmed.Load()) {
		t.Errorf("stream holds distribution weight %v, but %d was confirmed with 2xx (lost after acknowledgement)", acceptedDist, load.confirmed.Load())
	}
	if acceptedDist > float64(load.confirmed.Load()+load.failed.Load()) {
		t.Errorf("stream holds distribution weight %v, more than was ever sent (%d)", acceptedDist, load.confirmed.Load()+load.failed.Load())
	}
	if acceptedSamples > float64(load.tcpSent.Load()) {
		t.Errorf("stream holds %v samples, more than were sent (%d)", acceptedSamples, load.tcpSent.Load())
	}
	if accepted == 0 {
		t.Fatal("nothing was accepted")
	}

	// Wait until the file sink holds everything (and nothing more arrives
	// for a few ticks' worth), or give up at the deadline. Sinks may lag:
	// on Kafka a restarted les' sink consumer gets its partitions only
	// once the group has dropped the members of the killed runs (see
	// kafkaBackend), so the deadline leaves room for that.
	emitted, stableSince := untilStable(accepted, stopped.Add(100*time.Second), func() float64 {
		var ds []distLine
		ds, dupLines = fileSinkDists(t, out)
		total, w, c := sum(ds)
		windows, corrections = w, c
		return total
	})
	caughtUp := stableSince.Sub(stopped)

	// Second view: the rollup records on the stream, de-duplicated by id.
	streamEmitted, streamDups := streamEmitted(t, l, "crash")

	t.Logf("backend %s (partitions %d): kills %d at random delays %v over %v of load",
		b.Kind, max(b.Partitions, 1), kills, killTimes, loadFor.Round(time.Millisecond))
	t.Logf("ingest records on the stream: %d ids, %d duplicate ids (counted once; the test re-published %d)", truth.ids, inDups, replayed)
	t.Logf("accepted: %v samples (%v !M centroid weight from %d HTTP requests, %d confirmed + up to %d cut by kills; %v TCP samples of %d sent)",
		accepted, acceptedDist, load.requests.Load(), load.confirmed.Load(), load.failed.Load(), acceptedSamples, load.tcpSent.Load())
	t.Logf("emitted (file sink, de-duplicated by record id): count %v in %d windows + %d corrections; %d duplicate lines skipped; last change %v after the load stopped",
		emitted, windows, corrections, dupLines, caughtUp.Round(100*time.Millisecond))
	t.Logf("emitted (rollup records on the stream, by id): count %v; %d duplicate records", streamEmitted, streamDups)
	t.Logf("restarts that re-published a checkpointed outbox: %d; that reclaimed unacknowledged sink deliveries: %d", outboxes, reclaims)
	tally(scrapeMetrics(l))
	t.Logf("re-published records the rollup dropped by id (les_consumer_duplicate_records_total, summed over %d runs; a record replayed after a crash counts in each run that read it): %d",
		kills+1, rollupDups)
	t.Logf("les_rollup_late_samples_total (last run) %v", l.Metric("les_rollup_late_samples_total"))

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
		if b.diagnose != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			b.diagnose(ctx, t, "archive")
			cancel()
		}
		if dir := os.Getenv("LES_E2E_OUTPUT_DIR"); dir != "" {
			path := filepath.Join(dir, "rollup-crash-"+b.Kind+".log")
			if err := os.WriteFile(path, []byte(l.Output()), 0o644); err == nil {
				t.Logf("les output (last run) written to %s", path)
			}
		}
		t.Errorf("file sink: sum of emitted counts %v != accepted samples %v (diff %v)", emitted, accepted, emitted-accepted)
	}
	if streamEmitted != accepted {
		t.Errorf("stream: sum of emitted counts %v != accepted samples %v (diff %v)", streamEmitted, accepted, streamEmitted-accepted)
	}
	l.StopOrDump(30 * time.Second)
	t.Logf("backend %s: %v in all", b.Kind, time.Since(began).Round(time.Millisecond))
}

// scrapeMetrics returns les' /metrics text, or "" when les does not answer.
func scrapeMetrics(l *Les) string {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + l.Addr("http") + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}
