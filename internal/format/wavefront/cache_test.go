package wavefront

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/les-streams/les/internal/bench"
	"github.com/les-streams/les/internal/model"
)

// decoded is what one Decode call produced, deep-copied so that it no
// longer aliases anything.
type decoded struct {
	Metrics []model.Metric
	Dists   []model.Distribution
	Spans   []model.Span
	Logs    []model.Log
	Rejects []string // reason + " " + line
}

func snapshot(b *model.Batch) decoded {
	var d decoded
	cl := func(s string) string { return strings.Clone(s) }
	tg := func(t model.Tags) model.Tags {
		if t == nil {
			return nil
		}
		out := make(model.Tags, len(t))
		for i, x := range t {
			out[i] = model.Tag{Key: cl(x.Key), Value: cl(x.Value)}
		}
		return out
	}
	for _, m := range b.Metrics {
		m.Name, m.Source, m.Tags = cl(m.Name), cl(m.Source), tg(m.Tags)
		m.Ref = 0 // compared apart: only hits have it
		d.Metrics = append(d.Metrics, m)
	}
	for _, x := range b.Dists {
		x.Name, x.Source, x.Tags = cl(x.Name), cl(x.Source), tg(x.Tags)
		x.Centroids = append([]model.Centroid(nil), x.Centroids...)
		d.Dists = append(d.Dists, x)
	}
	for _, s := range b.Spans {
		s.Name, s.Source, s.Tags = cl(s.Name), cl(s.Source), tg(s.Tags)
		s.TraceID, s.SpanID, s.ParentID = cl(s.TraceID), cl(s.SpanID), cl(s.ParentID)
		d.Spans = append(d.Spans, s)
	}
	for _, l := range b.Logs {
		l.Source, l.RequestID, l.Level, l.Message, l.Attrs = cl(l.Source), cl(l.RequestID), cl(l.Level), bytes.Clone(l.Message), tg(l.Attrs)
		d.Logs = append(d.Logs, l)
	}
	for _, r := range b.Rejects {
		d.Rejects = append(d.Rejects, r.Reason+" "+string(r.Line))
	}
	return d
}

// differ decodes payloads through one shared buffer with plain (no cache)
// and cached and fails on any difference. The buffer is rewritten for
// every payload, so a cache entry that aliased an earlier payload shows.
type differ struct {
	t              testing.TB
	plain, cached  *Decoder
	buf            []byte
	bPlain, bCache model.Batch
}

func newDiffer(t testing.TB, o Options) *differ {
	c := o
	c.SeriesCache = max(c.SeriesCache, 1)
	o.SeriesCache, o.SeriesCacheBytes = 0, 0
	return &differ{t: t, plain: NewDecoder(o), cached: NewDecoder(c)}
}

func (df *differ) decode(payload string) decoded {
	df.t.Helper()
	for i := range df.buf {
		df.buf[i] = 'X' // whatever an earlier payload left
	}
	df.buf = append(df.buf[:0], payload...)
	df.bPlain.Reset()
	df.bCache.Reset()
	df.plain.Decode(&df.bPlain, df.buf, now)
	var hits uint64
	if c := df.cached.cache; c != nil {
		hits = c.hits
	}
	df.cached.Decode(&df.bCache, df.buf, now)
	if c := df.cached.cache; c != nil {
		hits = c.hits - hits
	}
	interned := 0
	for _, m := range df.bCache.Metrics {
		if m.Ref != 0 {
			interned++
		}
	}
	if uint64(interned) != hits {
		df.t.Fatalf("%d metrics interned (Ref), %d hits: hits (and only they) are the cache's memory", interned, hits)
	}
	want, got := snapshot(&df.bPlain), snapshot(&df.bCache)
	if reflect.DeepEqual(want, got) {
		return got
	}
	if diff := cmp.Diff(want, got); diff != "" {
		df.t.Fatalf("cached decoder differs on %.300q (-plain +cached):\n%s", payload, diff)
	}
	return got
}

// cacheLines are metric lines built from parts that probe every edge of
// the cache's split: names, values, timestamps and tag sections that are
// valid, invalid, quoted, escaped, spaced differently.
func cacheLines() []string {
	names := []string{"m", `"m"`, `"a b"`, `'q\'x'`, `"esc\"aped"`, "∆delta", "Δd", "~x", "bad!name", `"1"`, "a=b", "#h", "m\xff", `"m`, "!M", "@Event", "[m", "{m", "m" + strings.Repeat("n", 1030),
		// Around the 8-byte steps of wordEndFast: '=' and whitespace
		// (VT, 0x1f) at the step edges, bytes below 0x21 that end no token,
		// UTF-8 bytes.
		"abcdefg", "abcdefgh", "abcdefghi", "abcdefghijklmno", "abcdefghijklmnop", "abcdefghijklmnopq", "abcdefgh=x",
		"abcdefg=x", "abcdefghijklmnop=", "abcdefghij\vk", "abcdefg\x1fh", "abcdefg\x01hijklmn", "a\x00b\x0ec\x1bdefghij", "ab∆cdefghij"}
	values := []string{"1", "-1", "0", "1.000000000000000000000000000000001", "1.5", "1e400", "NaN", "x", `"2"`, "1#", "\xff", "0x1p3", "1=2", "#3", "'4'",
		// Where scanSeries parses the value as it scans it: the ends of
		// parseSimpleFloat's syntax, and what follows the digits.
		"-", "--1", "1-", "1.", ".5", "-.5", "1..2", "-0", "+1", "123456789012345", "1234567890123456", "1.23456789012345",
		"0.000000000000001", "1\x01", "1\x0b", "12x", "1.5=2", "1e3"}
	tss := []string{"", strconv.Itoa(baseSec), strconv.Itoa(baseSec) + "123", "1", `"` + strconv.Itoa(baseSec) + `"`, "2xx", "1.7672244e9", strconv.Itoa(baseSec) + "=", "'x'"}
	tagSecs := []string{"", "source=s", "host=h", "source=s host=h", "host=h source=s", "k=v", "k = v", "k= v", `"k"="v w"`, `k="a\"b"`,
		"tag=t _tag=u", "_host=x host=h source=s", "k=v k=w", "k=w k=v", "k=", "=v", "k", "1=2", "k=v #x", "source=", `k=" "`,
		nTags(3), nTags(101), "k=\xff", `k="unterminated`, "2xx=y", "Z=1 a=2 _=3 B=4 b=5 a=6", `"=x"=1`, "k=" + strings.Repeat("v", 300),
		"source=" + strings.Repeat("s", 1100), "k='it''s'", "k=v\tsource=s", "k=\"\\\"\""}
	line := func(n, v, ts, tg string) string {
		l := n + " " + v
		if ts != "" {
			l += "  " + ts
		}
		if tg != "" {
			l += "\t" + tg
		}
		return l
	}
	// Every series part with several values and timestamps (hits on a
	// warm cache, and per-line rejects on them), every value and
	// timestamp with several series parts.
	var out []string
	k := 0
	for _, n := range names {
		for _, tg := range tagSecs {
			for range 4 {
				out = append(out, line(n, values[k%len(values)], tss[k%len(tss)], tg))
				k++
			}
		}
	}
	// Series that are accepted, with every value and timestamp: hits that
	// must still reject per line.
	for _, n := range []string{"m", "∆delta", "Δd", `"~x"`} {
		for _, tg := range []string{"", "source=s", `k="a\"b"`, "k=v host=h"} {
			for _, v := range values {
				for _, ts := range tss {
					out = append(out, line(n, v, ts, tg))
				}
			}
		}
	}
	for _, v := range values {
		for _, ts := range tss {
			for range 4 {
				out = append(out, line(names[k%len(names)], v, ts, tagSecs[k%len(tagSecs)]))
				k++
			}
		}
	}
	return out
}

var cacheOptions = []Options{
	{Mode: ModeMetrics},
	{Mode: ModeMetrics, SeriesCache: 7},                          // resets often
	{Mode: ModeMetrics, SeriesCache: 100, SeriesCacheBytes: 900}, // bounded by bytes
	{Mode: ModeSample, Window: model.WindowHour},
	{Mode: ModeHistogram},
	{Mode: ModeDistOnly},
	{Mode: ModeTrace},
	{Mode: ModeMetrics, MaxTags: 2, DefaultSource: "dflt"},
	{Mode: ModeMetrics, MaxLineLen: 40},
}

// TestSeriesCacheDifferential: on every line of cacheLines, the golden
// cases and realistic payloads, grouped into payloads that come twice
// (the second time from a warm cache), a cached Decoder gives exactly
// what an uncached one gives: items, tag order and nil-ness, rejects.
func TestSeriesCacheDifferential(t *testing.T) {
	lines := cacheLines()
	for _, g := range goldenCases() {
		lines = append(lines, strings.Split(g.in, "\n")...)
	}
	lines = append(lines, strings.Split(string(realisticPayload(200)), "\n")...)
	lines = append(lines, strings.Split(string(benchDatagrams(100, 20, 1)[0]), "\n")...)
	for oi, o := range cacheOptions {
		df := newDiffer(t, o)
		r := rand.New(rand.NewPCG(uint64(oi), 7))
		order := r.Perm(len(lines))
		for i := 0; i < len(order); {
			n := 1 + r.IntN(30)
			var p strings.Builder
			for _, j := range order[i:min(i+n, len(order))] {
				p.WriteString(lines[j])
				p.WriteByte('\n')
			}
			i += n
			df.decode(p.String())
			df.decode(p.String()) // warm
		}
		c := df.cached.cache
		if c == nil {
			if o.Mode != ModeTrace && o.Mode != ModeDistOnly {
				t.Errorf("options %d: no cache", oi)
			}
			continue
		}
		if (c.hits == 0 || c.misses == 0) && o.Mode != ModeTrace && o.Mode != ModeDistOnly {
			t.Errorf("options %d: %d hits, %d misses: the test does not exercise the cache", oi, c.hits, c.misses)
		}
		if o.SeriesCache > 0 && o.SeriesCache < 50 && c.resets == 0 {
			t.Errorf("options %d: the cache never filled", oi)
		}
		if c.m.Len() > c.maxEntries || c.bytes > c.maxBytes {
			t.Errorf("options %d: %d entries, %d bytes over the bounds %d, %d", oi, c.m.Len(), c.bytes, c.maxEntries, c.maxBytes)
		}
	}
}

// TestSeriesCacheOwnsItsStrings: a hit emits the cache's strings, not the
// payload's: rewriting the first payload's buffer changes nothing, and
// items of an earlier batch stay as they were after the cache is dropped
// and refilled.
func TestSeriesCacheOwnsItsStrings(t *testing.T) {
	const p = `cpu.load 1 source=web01 env="prod east" "k"='v' z=1` + "\n" + `"esc.aped" 2 host=h k="a\"b"` + "\n"
	d := NewDecoder(Options{SeriesCache: 4})
	first := []byte(p)
	var b model.Batch
	d.Decode(&b, first, now)
	for i := range first {
		first[i] = '#'
	}
	var hit model.Batch
	d.Decode(&hit, []byte(p), now)
	if d.cache.hits != 2 {
		t.Fatalf("%d hits, want 2", d.cache.hits)
	}
	want := snapshot(&hit)
	var plain model.Batch
	NewDecoder(Options{}).Decode(&plain, []byte(p), now)
	if diff := cmp.Diff(snapshot(&plain), want); diff != "" {
		t.Fatalf("hits differ from an uncached decode (-plain +hits):\n%s", diff)
	}
	for _, m := range hit.Metrics {
		if len(m.Tags) > 0 && cap(m.Tags) != len(m.Tags) {
			t.Errorf("%s: tags capacity %d > length %d: an append could write into the cache", m.Name, cap(m.Tags), len(m.Tags))
		}
	}
	// Fill the cache past its size many times over: it pauses (new series
	// only) and is then dropped and begun anew, never rewritten.
	for i := range 300 {
		var x model.Batch
		d.Decode(&x, []byte("cpu.load 1 source=web01 env=prod"+strconv.Itoa(i)), now)
	}
	if c := d.cache; c.resets == 0 || c.pauses == 0 || c.m.Len() > 4 {
		t.Fatalf("%d resets, %d pauses, %d entries: the cache did not fill, pause and begin anew within its size", c.resets, c.pauses, c.m.Len())
	}
	if diff := cmp.Diff(want, snapshot(&hit)); diff != "" {
		t.Fatalf("items of an earlier batch changed (-before +after):\n%s", diff)
	}
}

// TestSeriesCacheAllocs: decoding lines of known series allocates nothing.
func TestSeriesCacheAllocs(t *testing.T) {
	ps := benchDatagrams(500, 20, 8)
	d := NewDecoder(Options{SeriesCache: DefaultSeriesCache})
	var b model.Batch
	decodeAll := func() {
		b.Reset()
		for _, p := range ps {
			d.Decode(&b, p, now)
		}
	}
	for range 3 {
		decodeAll()
	}
	misses := d.cache.misses
	if allocs := testing.AllocsPerRun(50, decodeAll); allocs != 0 {
		t.Fatalf("warm Decode with the series cache: %v allocs, want 0", allocs)
	}
	if d.cache.misses != misses || len(b.Rejects) != 0 {
		t.Fatalf("%d misses, rejects %v: not all hits", d.cache.misses-misses, b.Rejects)
	}
}

// benchDatagrams returns count datagrams of perDgram lines of the load
// `les bench --format wavefront --series series` sends
// (internal/bench.Datagrams): a source and 3 to 6 tags a series, every
// series visited in a shuffled order.
func benchDatagrams(series, perDgram, count int) [][]byte {
	ds, err := bench.Datagrams("wavefront", series, count, perDgram, 1<<20, 42)
	if err != nil {
		panic(err)
	}
	return ds
}

// flood is datagrams of lines whose sources are all new each time renew
// is called: a flood of new series, the miss path.
type flood struct {
	dgrams [][]byte
	digits [][2]int // per line: datagram, offset of its source's 9 digits
	n      int
}

func newFlood(perDgram, count int) *flood {
	f := &flood{dgrams: benchDatagrams(perDgram*count, perDgram, count)}
	for i, d := range f.dgrams {
		var out []byte
		for j, line := range strings.Split(string(d), "\n") {
			if j > 0 {
				out = append(out, '\n')
			}
			// A source of 9 digits that renew rewrites in place.
			at := strings.Index(line, "source=fn-") + len("source=fn-")
			end := at + strings.IndexByte(line[at:], ' ')
			f.digits = append(f.digits, [2]int{i, len(out) + at})
			out = append(out, line[:at]+"000000000"+line[end:]...)
		}
		f.dgrams[i] = out
	}
	f.renew()
	return f
}

// renew gives every line a source never used before.
func (f *flood) renew() {
	for _, p := range f.digits {
		f.n++
		b := f.dgrams[p[0]][p[1] : p[1]+9]
		for i, v := 8, f.n; i >= 0; i, v = i-1, v/10 {
			b[i] = byte('0' + v%10)
		}
	}
}

// BenchmarkDecodeRealistic decodes the `les bench` default mix: 20 lines
// per datagram, 16 datagrams per batch (one UDP read), values varying;
// each op is 1,000 datagrams (20,000 lines). hit: 5,000 series (the cache
// is warm); over: 20,000 series, more than the cache holds; flood: every
// line is a new series (the miss path; rewriting the sources is part of
// the op for both).
func BenchmarkDecodeRealistic(b *testing.B) {
	for _, tc := range []string{"hit", "over", "flood"} {
		for _, size := range []int{0, DefaultSeriesCache} {
			b.Run(tc+"/cache="+strconv.Itoa(size), func(b *testing.B) {
				var ps [][]byte
				var f *flood
				switch tc {
				case "hit":
					ps = benchDatagrams(5000, 20, 1000)
				case "over":
					ps = benchDatagrams(20000, 20, 1000)
				default:
					f = newFlood(20, 1000)
					ps = f.dgrams
				}
				d := NewDecoder(Options{SeriesCache: size})
				var batch model.Batch
				n := 0
				for _, p := range ps {
					n += len(p)
				}
				run := func() {
					if f != nil {
						f.renew()
					}
					for i, p := range ps {
						if i%16 == 0 {
							batch.Reset()
						}
						d.Decode(&batch, p, now)
					}
				}
				run() // warm
				b.SetBytes(int64(n))
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					run()
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(20*len(ps)*b.N), "ns/line")
				if len(batch.Rejects) != 0 {
					b.Fatal(batch.Rejects[0])
				}
			})
		}
	}
}

// BenchmarkSeriesCacheMemory reports the heap a warm cache holds per
// series of the `les bench` mix, and its counted bytes per series.
func BenchmarkSeriesCacheMemory(b *testing.B) {
	for _, series := range []int{5000, 10000} {
		b.Run("series="+strconv.Itoa(series), func(b *testing.B) {
			ps := benchDatagrams(series, 20, series/20)
			var heap, counted float64
			for range b.N {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				d := NewDecoder(Options{SeriesCache: DefaultSeriesCache})
				var batch model.Batch
				for _, p := range ps {
					batch.Reset()
					d.Decode(&batch, bytes.Clone(p), now)
				}
				batch = model.Batch{}
				runtime.GC()
				runtime.ReadMemStats(&after)
				if d.cache.m.Len() != series {
					b.Fatalf("%d entries, want %d", d.cache.m.Len(), series)
				}
				heap = float64(after.HeapAlloc-before.HeapAlloc) / float64(series)
				counted = float64(d.cache.bytes) / float64(series)
				runtime.KeepAlive(d)
			}
			b.ReportMetric(heap, "heapB/series")
			b.ReportMetric(counted, "countedB/series")
		})
	}
}

// FuzzSeriesCache: payloads through one cached Decoder (so the cache is
// warm, and the shared buffer is rewritten between payloads) decode as
// with an uncached one.
func FuzzSeriesCache(f *testing.F) {
	fuzzSeeds := []string{string(realisticPayload(20)), string(benchDatagrams(10, 5, 1)[0]),
		"m 1 source=s k=v\nm 2 k=v source=s\n\"m\" 3 " + strconv.Itoa(baseSec) + " source=s k=v",
		`"esc\"aped" 2 host=h k="a\"b" tag=x`, "∆d 0 k=v\n∆d 1 k=v", "m 1 1 k=v\nm 1 \"1\" k=v"}
	for i, s := range fuzzSeeds {
		f.Add(s, fuzzSeeds[(i+1)%len(fuzzSeeds)], uint8(i))
	}
	f.Fuzz(func(t *testing.T, a, b string, mode uint8) {
		o := Options{Mode: allModes[int(mode)%len(allModes)], Window: model.Window(mode / 8 % 6)}
		if mode&0x40 != 0 {
			o.MaxTags, o.SeriesCache = 3, 2
		}
		df := newDiffer(t, o)
		for _, p := range []string{a, b, a, b + "\n" + a, a + "\n" + a} {
			df.decode(p)
		}
	})
}

// TestSeriesCachePauses: a full cache that earned fewer hits than it has
// entries pauses. While lines keep hitting it stays, read-only; a flood
// of new series turns it off for a while; then it begins anew and caches
// again. Decoding stays exact throughout.
func TestSeriesCachePauses(t *testing.T) {
	const size = 8
	df := newDiffer(t, Options{SeriesCache: size})
	c := df.cached.cache
	line := func(i int) string { return "m " + strconv.Itoa(i%7+1) + " source=s" + strconv.Itoa(i) + " k=v" }
	var p strings.Builder
	for i := range size {
		p.WriteString(line(i) + "\n")
	}
	df.decode(p.String())
	if c.m.Len() != size || c.pause != 0 {
		t.Fatalf("%d entries, pause %d after %d series", c.m.Len(), c.pause, size)
	}
	// More series than the cache holds, cycling: the first fill earned
	// hits, so it begins anew; the second did not, so it pauses, keeps
	// answering from the 8 series it has (8 of every 10 lines hit) and
	// takes no more.
	cycle := func() {
		p.Reset()
		for i := range 10 {
			p.WriteString(line(i) + "\n")
		}
		df.decode(p.String())
	}
	for range 3 {
		cycle()
	}
	if c.resets != 1 || c.pauses != 1 || c.pause == 0 {
		t.Fatalf("%d resets, %d pauses, pause %d; want 1, 1, > 0", c.resets, c.pauses, c.pause)
	}
	hits, resets := c.hits, c.resets
	for range 20 {
		cycle()
	}
	if c.hits-hits != 20*8 || c.m.Len() != size || c.off != 0 || c.pauses != 1 {
		t.Fatalf("paused: %d hits (want %d), %d entries, off %d, pauses %d", c.hits-hits, 20*8, c.m.Len(), c.off, c.pauses)
	}
	// A flood of new series into a full cache without hits: it pauses,
	// and after size lookups without a hit it is off for
	// pauseFactor×size lines, then begins anew.
	df = newDiffer(t, Options{SeriesCache: size})
	c = df.cached.cache
	p.Reset()
	for i := range size + 1 + size {
		p.WriteString(line(1000+i) + "\n")
	}
	df.decode(p.String())
	if c.off != pauseFactor*size || c.pause != 0 || c.m.Len() != size {
		t.Fatalf("flood: off %d, pause %d, %d entries; want off %d, 0, %d", c.off, c.pause, c.m.Len(), pauseFactor*size, size)
	}
	hits, resets = c.hits, c.resets
	p.Reset()
	for i := range pauseFactor * size {
		p.WriteString(line(1000+i) + "\n") // would hit, but the cache is off
	}
	df.decode(p.String())
	if c.hits != hits || c.resets != resets+1 || c.m.Len() != 0 {
		t.Fatalf("off: %d hits, %d resets, %d entries; want none, one more, none", c.hits-hits, c.resets-resets, c.m.Len())
	}
	df.decode(line(1) + "\n" + line(1) + "\n")
	if c.hits != hits+1 || c.m.Len() != 1 {
		t.Fatalf("after the pause: %d hits, %d entries; want 1, 1", c.hits-hits, c.m.Len())
	}
}
