package wire

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/les-streams/les/internal/model"
)

// referenceSeriesBody is the series-encoded body of ms written the
// straightforward way (docs/wire-format.md, "Series encoding"): strings and
// series numbered in first-use order by maps of their contents. The
// differential tests hold the encoder's bytes to it.
func referenceSeriesBody(ms []model.Metric) []byte {
	strNum := map[string]uint64{}
	var strs, entries, items []byte
	str := func(s string) uint64 {
		n, ok := strNum[s]
		if !ok {
			n = uint64(len(strNum))
			strNum[s] = n
			strs = binary.AppendUvarint(strs, uint64(len(s)))
			strs = append(strs, s...)
		}
		return n
	}
	seriesNum := map[string]uint64{}
	var prevT int64
	for _, m := range ms {
		id := []string{strconv.Itoa(int(m.Kind)), strconv.Itoa(int(m.Window)), m.Name, m.Source}
		for _, tg := range m.Tags {
			id = append(id, tg.Key, tg.Value)
		}
		key := fmt.Sprintf("%q", id)
		idx, ok := seriesNum[key]
		if !ok {
			idx = uint64(len(seriesNum))
			seriesNum[key] = idx
			entries = append(entries, byte(m.Kind), byte(m.Window))
			entries = binary.AppendUvarint(entries, str(m.Name))
			entries = binary.AppendUvarint(entries, str(m.Source))
			entries = binary.AppendUvarint(entries, uint64(len(m.Tags)))
			for _, tg := range m.Tags {
				entries = binary.AppendUvarint(entries, str(tg.Key))
				entries = binary.AppendUvarint(entries, str(tg.Value))
			}
		}
		items = binary.AppendUvarint(items, idx)
		items = binary.AppendVarint(items, m.Timestamp-prevT)
		prevT = m.Timestamp
		items = binary.LittleEndian.AppendUint64(items, math.Float64bits(m.Value))
	}
	body := binary.AppendUvarint(nil, uint64(len(strNum)))
	body = append(body, strs...)
	body = binary.AppendUvarint(body, uint64(len(seriesNum)))
	body = append(body, entries...)
	return append(body, items...)
}

// checkBody fails t unless e's record is the reference encoding of want.
func checkBody(t *testing.T, e *Encoder, want []model.Metric, what string) {
	t.Helper()
	rec, err := e.Finish(nil, 1, 1, CompressionNone)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rec[HeaderSize:], referenceSeriesBody(want)) {
		t.Fatalf("%s: the record differs from the reference encoding of its points", what)
	}
	if e.Size() != len(rec)-HeaderSize {
		t.Fatalf("%s: Size %d, body %d bytes", what, e.Size(), len(rec)-HeaderSize)
	}
}

// mixedPoints is points of overlapping series the ways an encoder meets
// them: interned in several caches (the same identity under different
// references, and one entry with several kinds), more caches than the
// encoder tells apart, entry numbers it does not index, tags in other
// orders (other series), and without a reference (reused memory).
func mixedPoints(seed uint64, n int) []model.Metric {
	rng := rand.New(rand.NewPCG(seed, 3))
	base := randomMetrics(seed, 4000, 300)
	var sources [][]model.Metric
	for c := range refCaches + 2 {
		ms := slices.Clone(base[c*500 : c*500+1500])
		for i := range ms {
			if ms[i].Kind == model.Kind(c) {
				ms[i].Kind = model.Counter // an entry seen with two kinds
			}
		}
		sources = append(sources, sharedMetrics(ms))
	}
	plain := slices.Clone(base)
	for i := range plain {
		if i%5 == 0 && len(plain[i].Tags) > 1 {
			plain[i].Tags = slices.Clone(plain[i].Tags)
			slices.Reverse(plain[i].Tags)
		}
	}
	sources = append(sources, plain)
	far := sharedMetrics(base[:800])
	for i := range far {
		switch i % 3 {
		case 0:
			far[i].Ref += refMaxEntry // entry numbers the encoder looks up by identity
		case 1:
			far[i].Ref &^= math.MaxUint32 // entry 0: no entry
		}
	}
	sources = append(sources, far)
	out := make([]model.Metric, n)
	for i := range out {
		s := sources[rng.IntN(len(sources))]
		out[i] = s[rng.IntN(len(s))]
		out[i].Timestamp += int64(i)
	}
	return out
}

// TestSeriesEncodeReference: records of mixed points, and of points of
// one cache (whose reference table the encoder keeps across records), one
// encoder reused for many records (what it remembers across them must not
// change a byte), are the reference encoding of their points, with and
// without what the encoder keeps across records held small enough to be
// forgotten between them.
func TestSeriesEncodeReference(t *testing.T) {
	inputs := map[string][]model.Metric{"mixed": mixedPoints(1, 20000), "one cache": sharedMetrics(randomMetrics(2, 20000, 400))}
	for name, ms := range inputs {
		for _, small := range []bool{false, true} {
			e := NewEncoding(SignalMetrics, EncodingSeries)
			if small {
				e.tab.dict.maxStrings, e.tab.dict.maxBytes, e.tab.maxRefGids = 40, 200, 500
			}
			for r := range 12 {
				part := ms[r*1500 : r*1500+500+r*100]
				if r%4 == 3 {
					part = slices.Clone(part)
					slices.Reverse(part)
				}
				e.Reset()
				for i := range part {
					e.AppendMetric(&part[i])
				}
				checkBody(t, e, part, fmt.Sprintf("%s, small %v, record %d", name, small, r))
			}
			if small && len(e.tab.dict.strs) > 40+len(e.tab.strAt) {
				t.Fatalf("the dictionary holds %d strings past its bound", len(e.tab.dict.strs))
			}
		}
	}
}

// TestSeriesEncodeReferenceUndo: appends undone (Split) at random, in
// records of mixed points, leave the reference encoding of the points
// kept, and the next records are unaffected.
func TestSeriesEncodeReferenceUndo(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	for name, ms := range map[string][]model.Metric{"mixed": mixedPoints(2, 12000), "one cache": sharedMetrics(randomMetrics(3, 12000, 400))} {
		e := NewEncoding(SignalMetrics, EncodingSeries)
		for r := range 6 {
			part := ms[r*2000 : (r+1)*2000]
			e.Reset()
			var want []model.Metric
			for i := 0; i < len(part); {
				mk := e.mark()
				n := 1 + rng.IntN(40)
				if i+n > len(part) {
					n = len(part) - i
				}
				for j := range n {
					e.AppendMetric(&part[i+j])
				}
				if rng.IntN(3) == 0 {
					e.undo(mk)
				} else {
					want = append(want, part[i:i+n]...)
				}
				i += n
			}
			checkBody(t, e, want, fmt.Sprintf("%s, record %d", name, r))
		}
	}
}

// TestSeriesEncodeGenerations: the encoder's record numbers for what it
// found by reference wrap without a series of an earlier record being
// taken for one of this record.
func TestSeriesEncodeGenerations(t *testing.T) {
	ms := sharedMetrics(randomMetrics(3, 300, 50))
	e := NewEncoding(SignalMetrics, EncodingSeries)
	e.tab.gen = math.MaxUint32 - 2
	for r := range 6 {
		part := ms[r*50 : r*50+50]
		e.Reset()
		for i := range part {
			e.AppendMetric(&part[i])
		}
		checkBody(t, e, part, fmt.Sprintf("record %d", r))
	}
}

// benchSeries is `les bench`'s StatsD mix as the agent's encoder sees it:
// n series (16 names, a function per 16 series, 4 to 7 sorted tags),
// each interned in one series cache with its own copy of its strings.
func benchSeries(n int) []model.Metric {
	names := []string{"aws.lambda.duration", "aws.lambda.billed_duration", "aws.lambda.init_duration",
		"aws.lambda.invocations", "aws.lambda.errors", "aws.lambda.throttles", "aws.lambda.max_memory_used",
		"aws.lambda.concurrent_executions", "app.cart.items", "app.cart.value", "app.checkout.latency",
		"app.db.query_time", "app.cache.hits", "app.cache.misses", "app.http.requests", "app.http.response_size"}
	kinds := []model.Kind{model.Sample, model.Counter, model.Gauge}
	regions := []string{"us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2"}
	runtimes := []string{"nodejs20.x", "python3.12", "go1.x", "java21", "provided.al2023"}
	envs := []string{"prod", "staging", "dev"}
	routes := []string{"/cart", "/checkout", "/items", "/users", "/health", "/search"}
	rng := rand.New(rand.NewPCG(5, 5))
	cache := uint64(model.NewInternID()) << 32
	out := make([]model.Metric, n)
	for i := range out {
		fn := i / len(names)
		tags := model.Tags{{Key: "env", Value: envs[fn/25%3]}, {Key: "metric_type", Value: "timing"},
			{Key: "region", Value: regions[fn%5]}, {Key: "runtime", Value: runtimes[fn/5%5]}}
		extra := rng.IntN(4)
		if extra > 2 {
			tags = append(tags, model.Tag{Key: "cold_start", Value: strconv.FormatBool(fn%7 == 0)})
		}
		if extra > 1 {
			tags = append(tags, model.Tag{Key: "route", Value: routes[i%6]})
		}
		if extra > 0 {
			tags = append(tags, model.Tag{Key: "version", Value: strconv.Itoa(fn % 4)})
		}
		slices.SortFunc(tags, func(a, b model.Tag) int { return strings.Compare(a.Key, b.Key) })
		for j := range tags { // the cache's own copy of the series' strings
			tags[j] = model.Tag{Key: strings.Clone(tags[j].Key), Value: strings.Clone(tags[j].Value)}
		}
		out[i] = model.Metric{Name: strings.Clone(names[i%16]), Source: "fn-" + strconv.Itoa(fn), Tags: tags,
			Kind: kinds[i%16%3], Ref: cache | uint64(i+1)}
	}
	return out
}

// benchRecord is points points of series in random series order, each
// series at least once, timestamps a few µs apart.
func benchRecord(series []model.Metric, points int) []model.Metric {
	rng := rand.New(rand.NewPCG(6, 6))
	out := make([]model.Metric, 0, points)
	for _, i := range rng.Perm(len(series)) {
		out = append(out, series[i])
	}
	for len(out) < points {
		out = append(out, series[rng.IntN(len(series))])
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	for i := range out {
		out[i].Timestamp = 1700000000000000000 + int64(i)*11000
		out[i].Value = float64(rng.IntN(100000)) / 100
	}
	return out
}

// BenchmarkSeriesAppendRecord is the agent's encoder on `les bench`'s
// StatsD mix: 5,000 interned series, a record of 88,000 points (1 MiB
// uncompressed, where the batcher cuts it) holding every series, in
// random series order. "record" appends the whole record; "first" only
// each series' first point, the tables' share of it.
func BenchmarkSeriesAppendRecord(b *testing.B) {
	const nseries = 5000
	series := benchSeries(nseries)
	for _, c := range []struct {
		name string
		ms   []model.Metric
	}{{"record", benchRecord(series, 88000)}, {"first", benchRecord(series, nseries)}} {
		b.Run(c.name, func(b *testing.B) {
			e := NewEncoding(SignalMetrics, EncodingSeries)
			for i := range c.ms { // warm: what les bench measures is the steady state
				e.AppendMetric(&c.ms[i])
			}
			b.ReportAllocs()
			for b.Loop() {
				e.Reset()
				for i := range c.ms {
					e.AppendMetric(&c.ms[i])
				}
			}
			if e.tab.n != nseries {
				b.Fatalf("%d series in the record, want %d", e.tab.n, nseries)
			}
			ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			b.ReportMetric(ns/float64(len(c.ms)), "ns/point")
			b.ReportMetric(ns/nseries, "ns/series")
		})
	}
}

// TestSeriesEncodeAllocs: a warm encoder appends records of the bench mix,
// interned and not, allocating nothing per point: only, now and then, a
// Go map's table growing again after the clear between records (which
// gives it a new hash seed; the encoder before this one did the same),
// held here under one per 1,000 points.
func TestSeriesEncodeAllocs(t *testing.T) {
	interned := benchRecord(benchSeries(2000), 20000)
	plain := slices.Clone(interned)
	for i := range plain {
		plain[i].Ref = 0
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for name, ms := range map[string][]model.Metric{"interned": interned, "plain": plain} {
		e := NewEncoding(SignalMetrics, EncodingSeries)
		run := func() {
			e.Reset()
			for i := range ms {
				e.AppendMetric(&ms[i])
			}
		}
		run()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 5 {
			run()
		}
		runtime.ReadMemStats(&after)
		if n := after.Mallocs - before.Mallocs; n*1000 >= uint64(5*len(ms)) {
			t.Fatalf("%s: a warm encoder allocated %d times in 5 records of %d points", name, n, len(ms))
		}
		checkBody(t, e, ms, name)
	}
}

// FuzzSeriesEncodeReference: any sequence of points of a few series
// (interned in one of three caches, with one of four kinds, or without a
// reference in memory reused at the next point), of marks and undos and
// of records, with the dictionary and the reference tables held small,
// encodes to the reference encoding of the points kept.
func FuzzSeriesEncodeReference(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 0x10, 0x21, 0x32, 0xfe, 0x43, 0x54, 0xfd, 0xff, 0x65, 0x76, 0x87})
	f.Add([]byte{0x1f, 0x2f, 0x3f, 0x0f, 0xfe, 0x1e, 0xfd, 0x1e, 0xff, 0x1f, 0x2e, 0xff, 0x3f})
	vocab := []string{"a", "b", "", "cd"}
	type series struct {
		name, source string
		tags         model.Tags
	}
	var pool []series
	for s := range 15 {
		p := series{name: vocab[s%4], source: vocab[s/4%4]}
		for k := range s % 4 {
			p.tags = append(p.tags, model.Tag{Key: vocab[(s+k)%4], Value: vocab[(s+2*k)%4]})
		}
		pool = append(pool, p)
	}
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 4000 {
			return
		}
		e := NewEncoding(SignalMetrics, EncodingSeries)
		e.tab.dict.maxStrings, e.tab.dict.maxBytes, e.tab.maxRefGids = 3, 4, 12
		// Each cache's own copy of the pool, interned.
		var caches [3][]model.Metric
		for c := range caches {
			id := uint64(model.NewInternID()) << 32
			for s, p := range pool {
				m := model.Metric{Name: strings.Clone(p.name), Source: strings.Clone(p.source), Ref: id | uint64(s+1)}
				for _, tg := range p.tags {
					m.Tags = append(m.Tags, model.Tag{Key: strings.Clone(tg.Key), Value: strings.Clone(tg.Value)})
				}
				caches[c] = append(caches[c], m)
			}
		}
		reused := make([]byte, 64)
		reusedTags := make(model.Tags, 4)
		var want []model.Metric
		var mk encMark
		marked, markLen := false, 0
		for i, op := range ops {
			switch op {
			case 0xff:
				checkBody(t, e, want, fmt.Sprintf("op %d", i))
				e.Reset()
				want, marked = want[:0], false
				continue
			case 0xfe:
				mk, marked, markLen = e.mark(), true, len(want)
				continue
			case 0xfd:
				if marked {
					e.undo(mk)
					want, marked = want[:markLen], false
				}
				continue
			}
			s, how := int(op&15)%len(pool), op>>4
			p := pool[s]
			m := model.Metric{Name: p.name, Source: p.source, Tags: p.tags, Kind: model.Kind(how & 3), Value: float64(i), Timestamp: int64(i)}
			want = append(want, m)
			if c := how >> 2; c > 0 {
				cm := caches[c-1][s]
				m.Name, m.Source, m.Tags, m.Ref = cm.Name, cm.Source, cm.Tags, cm.Ref
			} else { // in memory the next point writes over
				b := reused[:0]
				put := func(s string) string {
					b = append(b, s...)
					return unsafe.String(unsafe.SliceData(b[len(b)-len(s):]), len(s))
				}
				m.Name, m.Source, m.Tags = put(p.name), put(p.source), reusedTags[:len(p.tags)]
				for j, tg := range p.tags {
					m.Tags[j] = model.Tag{Key: put(tg.Key), Value: put(tg.Value)}
				}
			}
			e.AppendMetric(&m)
		}
		checkBody(t, e, want, "end")
	})
}
