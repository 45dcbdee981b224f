package statsd

import (
	"bytes"
	"math"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/les-streams/les/internal/model"
)

// seriesPool returns n series parts of metric lines, each a name part
// (the name, maybe with Telegraf-style tags) and a list of tag sections;
// seriesLine puts one together with values, a type and other sections.
func seriesPool(rng *rand.Rand, n int) [][]string {
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	tags := []string{"env:prod", "env:dev", "region:us-east-1", "host:h1", "source:s1", "source:", "host:", "flag", "",
		":v", "url:http://x:1", "z:1", "a:2", "k:2", "k:1", "ünï:cödé", "k=v", "A:b", "runtime:go1.x", "cold_start:false",
		longSource + ":ls", "abcdefgh1:x", "abcdefgh:y", "fn:f1", "fn:f2"}
	pool := make([][]string, n)
	for i := range pool {
		s := []string{pick("app.req", "aws.lambda.duration", "a", "n.a-b_c", "mé.trïc")}
		if rng.IntN(5) == 0 {
			s[0] += pick(",env=prod", ",host=h1,k=v", ",,", ",flag", ",=v", ",k=v=w,source=s", ",a=1,b=2,c=3,d=4,e=5,f=6,g=7,h=8,i=9")
		}
		for n := rng.IntN(3); n > 0; n-- {
			var b strings.Builder
			for t := rng.IntN(9); t > 0; t-- {
				b.WriteString(pick(tags...))
				if t > 1 {
					b.WriteString(",")
				}
			}
			s = append(s, b.String())
		}
		pool[i] = s
	}
	return pool
}

// seriesLine writes one line of series s: random values (some bad), a
// type (some unknown) and tag sections interleaved with sample rates,
// timestamps (some bad) and other sections.
func seriesLine(rng *rand.Rand, s []string) string {
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	value := func() string {
		if rng.IntN(8) == 0 {
			return pick("", "abc", "NaN", "1e400", "+", "-3", "+3", ".5", "1e3")
		}
		return strconv.Itoa(rng.IntN(2000) - 100)
	}
	var b strings.Builder
	b.WriteString(s[0] + ":" + value())
	for rng.IntN(5) == 0 {
		b.WriteString(":" + value())
	}
	b.WriteString("|" + pick("c", "g", "ms", "h", "d", "s", "c", "g", "ms", "x"))
	other := func() {
		for rng.IntN(3) == 0 {
			b.WriteString(pick("|@0.5", "|@0.1", "|@1", "|@0", "|@x", "|T1700000100", "|T", "|Tx", "|c:abc", "|", "|e:x"))
		}
	}
	other()
	for _, sec := range s[1:] {
		b.WriteString("|#" + sec)
		other()
	}
	return b.String()
}

// TestCachedDifferential decodes datagrams of repeating series through
// one cached decoder per option set, the payload always in the same
// reused buffer, and requires the same items and rejections as the
// uncached decoder. With the bypass off (every metric line through the
// cache), the metrics of the last batches must also stay as they were
// decoded while the buffer is overwritten and the cache fills and starts
// over: nothing aliases the payload. (Bypassed lines alias it, as the
// uncached decoder's do.)
func TestCachedDifferential(t *testing.T) {
	for _, bypass := range []bool{false, true} {
		t.Run("bypass="+strconv.FormatBool(bypass), func(t *testing.T) { testCachedDifferential(t, bypass) })
	}
}

func testCachedDifferential(t *testing.T, bypass bool) {
	opts := []Options{
		{SeriesCache: 1 << 12},
		{SeriesCache: 16, Flavor: FlavorEtsy},
		{SeriesCache: 1 << 12, MaxLineLen: 200, MaxTags: 8},
		{SeriesCache: 3, MaxTags: 1, DefaultSource: "lambda", SourceTags: []string{"fn", "host"}},
		{SeriesCache: 1 << 12, SeriesCacheBytes: 2000, SourceTags: []string{}},
		{SeriesCache: 64, SourceTags: []string{longSource, "host"}},
	}
	rng := rand.New(rand.NewPCG(7, 7))
	pool := seriesPool(rng, 60)
	realistic := realisticDatagrams(4, 31)
	datagrams := 1500
	if testing.Short() {
		datagrams = 400
	}
	for _, o := range opts {
		cached := NewDecoder(o)
		cached.cache.noBypass = !bypass
		po := o
		po.SeriesCache = 0
		plain := NewDecoder(po)
		type kept struct {
			got  model.Batch
			want result
		}
		var last []kept // the last few batches, kept alive
		var buf []byte
		for i := range datagrams {
			var sb strings.Builder
			if i%5 == 4 {
				sb.Write(realistic[rng.IntN(len(realistic))])
			}
			for n := 1 + rng.IntN(12); n > 0; n-- {
				if rng.IntN(10) == 0 {
					sb.WriteString(corpusLine(rng))
				} else {
					sb.WriteString(seriesLine(rng, pool[rng.IntN(len(pool))]))
				}
				sb.WriteString([]string{"\n", "\r\n"}[rng.IntN(2)])
			}
			p := sb.String()
			want := decode(plain, p) // aliases its own copy of p
			var k kept
			buf = append(buf[:0], p...)
			cached.Decode(&k.got, buf, now)
			k.want = want
			if got := batchResult(&k.got); !sameResult(want, got) {
				diff := diffResults(want, got)
				t.Fatalf("options %+v, cached Decode(%q) (-uncached +cached):\n%s", o, p, diff)
			}
			last = append(last, k)
			if len(last) > 8 {
				last = last[1:]
			}
			// Events and service checks (Logs) still alias the payload.
			clear(buf)
			for j := range last {
				if bypass {
					break
				}
				if !slices.EqualFunc(last[j].want.Metrics, last[j].got.Metrics, sameMetric) {
					diff := diffResults(result{Metrics: last[j].want.Metrics}, result{Metrics: last[j].got.Metrics})
					t.Fatalf("options %+v: items of an earlier batch changed (-decoded +now):\n%s", o, diff)
				}
			}
		}
		c := cached.cache
		if c.hits == 0 || c.m.Len() > c.maxEntries || c.bytes > c.maxBytes {
			t.Errorf("options %+v: %d hits, %d entries (max %d), %d bytes (max %d)", o, c.hits, c.m.Len(), c.maxEntries, c.bytes, c.maxBytes)
		}
		if !bypass && (o.SeriesCacheBytes > 0 || o.MaxTags != 1 && o.SeriesCache < 100) {
			if c.resets == 0 {
				t.Errorf("options %+v: the cache never filled", o)
			}
		}
		t.Logf("options %+v: %d hits, %d resets, backoff %d", o, c.hits, c.resets, c.backoff)
	}
}

// sameResult is diffResults(a, b) == "", fast.
func sameResult(a, b result) bool {
	return slices.EqualFunc(a.Metrics, b.Metrics, sameMetric) && slices.Equal(a.Rejects, b.Rejects) &&
		slices.EqualFunc(a.Logs, b.Logs, func(x, y model.Log) bool {
			return diffResults(result{Logs: []model.Log{x}}, result{Logs: []model.Log{y}}) == ""
		})
}

// sameMetric compares every field but Ref, floats bit for bit and
// tags in order (nil and empty tags alike), as diffResults.
func sameMetric(a, b model.Metric) bool {
	return a.Name == b.Name && math.Float64bits(a.Value) == math.Float64bits(b.Value) && a.Timestamp == b.Timestamp &&
		a.Source == b.Source && slices.Equal(a.Tags, b.Tags) && a.Kind == b.Kind && a.Window == b.Window && a.Series == b.Series
}

// TestSeriesCacheKeyShapes: lines whose key parts could be confused once
// the tag section is looked up in place, as running to the end of the
// line, decode as without the cache, whichever comes first: two '#'
// sections against one '#' section followed by another section of the
// same bytes, an empty '#' section against none, and tags followed by a
// sample rate or a timestamp. Each line is decoded twice, so that the
// second is a hit (or a hit of the wrong series if the key were
// ambiguous).
func TestSeriesCacheKeyShapes(t *testing.T) {
	groups := []struct {
		lines  []string
		series int // distinct keys: each cached once
	}{
		{[]string{"a:1|c|#x:1|#y:2", "a:2|c|#x:1|y:2", "a:3|c|#x:1|#y:2|e:z", "a:4|c|#|x:1|y:2"}, 3},
		{[]string{"a:1|c|#x:1|y:2", "a:2|c|#x:1|#y:2"}, 2},
		{[]string{"a:1|c|#|x:1", "a:2|c|#x:1", "a:3|c|#|#x:1", "a:4|c|#x:1|#"}, 4},
		{[]string{"a:1|c|#", "a:2|c", "a:3|c|#|"}, 1},
		{[]string{"a:1|c|#x:1", "a:2|c|#x:1|@0.5", "a:3|c|#x:1|T1700000000", "a:4|c|#x:1|@x", "a:5|c|#x:1|"}, 1},
		{[]string{"a:1|c|#x:1|c:abc", "a:2|c|#x:1", "a:3|c|@0.5|#x:1", "a:4|c||#x:1"}, 1},
		{[]string{"a,k=v:1|c|#x:1", "a:1|c|#x:1", "a,k=v:1|c|#|x:1", "a,:1|c|#x:1"}, 4},
	}
	for _, g := range groups {
		rev := slices.Clone(g.lines)
		slices.Reverse(rev)
		for _, order := range [][]string{g.lines, rev} {
			cached := NewDecoder(Options{SeriesCache: 64})
			cached.cache.noBypass = true
			plain := NewDecoder(Options{})
			for _, line := range order {
				for range 2 {
					want, got := decode(plain, line), decode(cached, line)
					if !sameResult(want, got) {
						t.Errorf("after %q: %q (-uncached +cached):\n%s", order, line, diffResults(want, got))
					}
				}
			}
			if n := cached.cache.m.Len(); n != g.series {
				t.Errorf("%q: %d entries, want %d", order, n, g.series)
			}
			if cached.cache.hits == 0 {
				t.Errorf("%q: no hits", order)
			}
		}
	}
}

// TestSeriesCacheOwnership: a hit's strings and tags are the cache's, not
// the payload's nor dst.Arena's, and its tags cannot be appended to in
// place.
func TestSeriesCacheOwnership(t *testing.T) {
	d := NewDecoder(Options{SeriesCache: 10})
	line := []byte("app.req,k=v:1|c|#source:s,b:2,a:1")
	var b model.Batch
	d.Decode(&b, line, now)
	d.Decode(&b, line, now)
	if len(b.Metrics) != 2 || d.cache.hits != 1 {
		t.Fatalf("%d metrics, %d hits; want 2, 1", len(b.Metrics), d.cache.hits)
	}
	in := func(s string, b []byte) bool {
		p, q := uintptr(unsafe.Pointer(unsafe.StringData(s))), uintptr(unsafe.Pointer(unsafe.SliceData(b)))
		return p >= q && p < q+uintptr(len(b))
	}
	for _, m := range b.Metrics {
		strs := []string{m.Name, m.Source}
		for _, tg := range m.Tags {
			strs = append(strs, tg.Key, tg.Value)
		}
		for _, s := range strs {
			if in(s, line) {
				t.Errorf("%q aliases the payload", s)
			}
		}
		if len(b.Arena) != 0 {
			t.Errorf("dst.Arena holds %v", b.Arena)
		}
		if cap(m.Tags) != len(m.Tags) {
			t.Errorf("tags %v have room to append in place", m.Tags)
		}
		if m.Ref == 0 {
			t.Errorf("%+v is not interned (Ref 0)", m)
		}
	}
	// A hit has the miss's memory: every point of the series the same.
	a, b2 := b.Metrics[0], b.Metrics[1]
	if unsafe.StringData(a.Name) != unsafe.StringData(b2.Name) || unsafe.StringData(a.Source) != unsafe.StringData(b2.Source) ||
		unsafe.SliceData(a.Tags) != unsafe.SliceData(b2.Tags) {
		t.Error("the hit does not share the miss's strings and tags")
	}
	if a.Ref != b2.Ref {
		t.Errorf("the hit's Ref %x is not the miss's %x", b2.Ref, a.Ref)
	}
	// Without a cache, nothing is interned.
	var ub model.Batch
	NewDecoder(Options{}).Decode(&ub, line, now)
	if len(ub.Metrics) != 1 || ub.Metrics[0].Ref != 0 {
		t.Errorf("uncached: %+v, want one metric, not interned", ub.Metrics)
	}
	want := m("app.req", 1, model.Counter, "a=1", "b=2", "k=v")
	want.Source = "s"
	if diff := diffResults(ms(want, want), ms(b.Metrics...)); diff != "" {
		t.Error(diff)
	}
}

// TestSeriesCacheBypass: a flood of new series turns the cache off for
// ever longer runs of lines, and repeating series bring it back.
func TestSeriesCacheBypass(t *testing.T) {
	d := NewDecoder(Options{SeriesCache: 100})
	c := d.cache
	var b model.Batch
	line := func(i int) []byte { return []byte("flood:1|c|#id:" + strconv.Itoa(i)) }
	for i := range 1500 {
		b.Reset()
		d.Decode(&b, line(i), now)
	}
	// Generations of 100 entries, no hit and the line that found the
	// cache full, each followed by a bypass of 1, 2, 4, 8 times 101
	// lines: the fourth bypass begins after line 4*101+(1+2+4)*101 = 1111
	// and has 808-(1500-1111) = 419 lines to go.
	if c.hits != 0 || c.resets != 4 || c.backoff != 16 || c.skip != 419 {
		t.Fatalf("after the flood: %d hits, %d resets, backoff %d, %d lines to skip; want 0, 4, 16, 419", c.hits, c.resets, c.backoff, c.skip)
	}
	for i := range 1000 {
		b.Reset()
		d.Decode(&b, line(i%10), now)
		if len(b.Metrics) != 1 || b.Metrics[0].Tags[0].Value != strconv.Itoa(i%10) {
			t.Fatalf("line %d: %+v", i, b.Metrics)
		}
	}
	if c.skip != 0 || c.hits != 1000-419-10 || c.m.Len() != 10 {
		t.Fatalf("after repeating series: %d lines to skip, %d hits, %d entries; want 0, 571, 10", c.skip, c.hits, c.m.Len())
	}
	// A generation that pays for itself resets the backoff.
	for i := range 1000 {
		b.Reset()
		d.Decode(&b, line(1000+i%91), now)
	}
	if c.resets != 5 || c.backoff != 1 || c.skip != 0 {
		t.Fatalf("after a good generation: %d resets, backoff %d, %d lines to skip; want 5, 1, 0", c.resets, c.backoff, c.skip)
	}
}

// TestSeriesCacheAllocs: a warm cached decode allocates nothing.
func TestSeriesCacheAllocs(t *testing.T) {
	d := NewDecoder(Options{SeriesCache: 1 << 14})
	var b model.Batch
	for name, ps := range map[string][][]byte{
		"realistic": realisticDatagrams(16, 31),
		"les bench": lesBenchDatagrams(1000, 200, false),
		"telegraf":  {telegrafDatagram(20)},
	} {
		decodeAll := func() {
			for _, p := range ps {
				b.Reset()
				d.Decode(&b, p, now)
			}
		}
		decodeAll()
		hits := d.cache.hits
		if allocs := testing.AllocsPerRun(5, decodeAll); allocs != 0 {
			t.Errorf("%s: a warm cached decode allocates %v times per run, want 0", name, allocs)
		}
		if d.cache.hits == hits {
			t.Errorf("%s: no hits", name)
		}
	}
}

// TestSeriesCacheHeap measures the heap a full cache of les bench's
// series holds and requires it within what the cache accounts against
// SeriesCacheBytes (plus one chunk of keys and one of tags).
func TestSeriesCacheHeap(t *testing.T) {
	for _, n := range []int{5000, 10000} {
		ps := lesBenchDatagrams(n, n/20, false) // each series once
		var b model.Batch
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		d := NewDecoder(Options{SeriesCache: 1 << 20, SeriesCacheBytes: 1 << 30})
		for _, p := range ps {
			b.Reset()
			d.Decode(&b, p, now)
		}
		b = model.Batch{}
		d.cache.key, d.cache.scratch = nil, model.Batch{}
		runtime.GC()
		runtime.ReadMemStats(&after)
		c := d.cache
		heap := int(after.HeapAlloc) - int(before.HeapAlloc)
		if c.m.Len() != n {
			t.Fatalf("%d entries, want %d", c.m.Len(), n)
		}
		t.Logf("%d series: heap %d bytes (%d/entry), accounted %d (%d/entry)", n, heap, heap/n, c.bytes, c.bytes/n)
		if slack := keyChunk + tagChunk*tagSize; heap > c.bytes+slack {
			t.Errorf("%d series: heap %d bytes, more than the %d accounted + %d", n, heap, c.bytes, slack)
		}
		runtime.KeepAlive(d)
		runtime.KeepAlive(ps)
	}
}

// FuzzCachedDecode decodes a, b, a, c, b, a through one cached decoder
// (full every few lines, the bypass off), always in the same buffer, and
// requires the uncached decoder's items and rejections, also after the
// buffer was overwritten by the later payloads; and the same items through
// a cached decoder with the bypass on.
func FuzzCachedDecode(f *testing.F) {
	f.Add([]byte("a:1|c|#k:v"), []byte("a:2|c|#k:v\na:3|g|@0.5|#k:v|T1"), []byte("a:x|c|#k:v\nb,k=v:1|ms|#a,b"))
	f.Add([]byte(string(realisticDatagrams(1, 8)[0])), []byte(string(realisticDatagrams(1, 8)[0])), []byte("a:1|c|#source:x"))
	f.Add([]byte("a:+1|g|#k:v"), []byte("a:-1|g|#k:v"), []byte("a:1|s|#k:v\na:|s|#k:v"))
	opts := Options{MaxLineLen: 512, MaxTags: 8, Flavor: FlavorEtsy}
	plain := NewDecoder(opts)
	opts.SeriesCache = 4
	cached := NewDecoder(opts)
	cached.cache.noBypass = true
	bypassing := NewDecoder(opts)
	f.Fuzz(func(t *testing.T, a, b, c []byte) {
		var buf []byte
		var got []model.Batch
		var want []result
		for i, p := range [][]byte{a, b, a, c, b, a} {
			want = append(want, decode(plain, string(p)))
			if g := decode(bypassing, string(p)); !sameResult(want[i], g) {
				t.Fatalf("payload %d, bypass on (-uncached +cached):\n%s", i, diffResults(want[i], g))
			}
			buf = append(buf[:0], p...)
			got = append(got, model.Batch{})
			cached.Decode(&got[len(got)-1], buf, now)
		}
		clear(buf)
		for i := range got {
			g := result{Metrics: got[i].Metrics, Logs: got[i].Logs, Rejects: want[i].Rejects}
			if len(got[i].Rejects) != len(want[i].Rejects) || !slices.EqualFunc(got[i].Rejects, want[i].Rejects,
				func(r model.Reject, w string) bool { return strings.HasPrefix(w, r.Reason+": ") }) {
				t.Fatalf("payload %d: rejections %v, want %v", i, got[i].Rejects, want[i].Rejects)
			}
			if diff := diffResults(want[i], g); diff != "" {
				t.Fatalf("payload %d (-uncached +cached):\n%s", i, diff)
			}
		}
	})
}

// BenchmarkDecodeLesBenchCached is BenchmarkDecodeLesBench through a
// series cache.
func BenchmarkDecodeLesBenchCached(b *testing.B) {
	benchDatagrams(b, NewDecoder(Options{SeriesCache: 16384}), lesBenchDatagrams(5000, 750, false))
}

// BenchmarkDecodeRealisticCached is BenchmarkDecodeRealistic through a
// series cache.
func BenchmarkDecodeRealisticCached(b *testing.B) {
	benchDatagrams(b, NewDecoder(Options{SeriesCache: 16384}), realisticDatagrams(16, 31))
}

// BenchmarkDecodeMissFloodCached is BenchmarkDecodeMissFlood through a
// series cache: every line misses, and the cache fills and starts over
// every 16,384 lines.
func BenchmarkDecodeMissFloodCached(b *testing.B) {
	benchDatagrams(b, NewDecoder(Options{SeriesCache: 16384}), lesBenchDatagrams(5000, 2500, true))
}

// hitLines are lines for the cache's fast path (decodeHit) and the shapes
// around it: the common layout with and without sections before its "#"
// section, invalid UTF-8 in each part, ':' and '|' in odd places, empty
// and several "#" sections, bad sample rates and timestamps, values the
// fast value path leaves to appendValues, keys at and over maxSeriesKey,
// events and Telegraf-style tags.
func hitLines() []string {
	long := strings.Repeat("n", maxSeriesKey-len(":k:v")) // with ":" and "k:v": a key of maxSeriesKey bytes
	return []string{
		"a.b:1|c|#k:v,x:y", "a:2.5|ms|#k:v", "a:734|g|#source:s,k:v", "a:+3|g|#k:v", "a:-3|g|#k:v", "a:-0|g|#k:v",
		"a:1|h|@0.5|#k:v", "a:1|d|@0.25|T1700000001|#k:v", "a:1|c|@0.5|#k:v", "a:1|c||#k:v", "a:1|c|||#k:v",
		"a:1|c|e:x|#k:v", "a:1|c|c:abc|@0.1|#k:v", "a:1|c|@x|#k:v", "a:1|c|@0|#k:v", "a:1|c|Tx|#k:v", "a:1|c|T|#k:v",
		"a:1|c|@0.5", "a:1|c|e:x", "a:1|c|e:x|", "a:1|c|#k:v|", "a:1|c|#k:v||", "a:1|c|#|k:v", "a:1|c|#", "a:1|c|#|",
		"a:1|c|#k:v|#x:y", "a:1|c|#k:v|@0.5|#x:y", "a:1|c|#k:v|#", "a:1|c|@0.5|#k:v|#x:y", "a:1|c|#k:v|@0.5",
		"a:1:2|c|#k:v", "a::1|c|#k:v", ":1|c|#k:v", ",a:1|c|#k:v", "a|b:1|c|#k:v", "a:1|c|#k:v:w", "a:1|c|#:v", "a:1||c|#k:v",
		"a:1|x|#k:v", "a:1|cc|#k:v", "a:1|m|#k:v", "a:1|#k:v", "a:1|", "a:1", "a|", "a",
		"a:|c|#k:v", "a:abc|c|#k:v", "a:.5|c|#k:v", "a:5.|c|#k:v", "a:1e3|c|#k:v", "a:NaN|g|#k:v", "a:1e400|g|#k:v",
		"a:999999999999999|c|@1e-300|#k:v", "a:9999999999999999|c|#k:v", "a:foo|s|#k:v", "a:|s|#k:v", "a:1:2|ms|@0.5|#k:v",
		"a\xff:1|c|#k:v", "a:1\xff|c|#k:v", "a:1|c|#k:\xff", "a:1|c|e:\xff|#k:v", "mé.trïc:1|c|#ünï:cödé",
		"a,k=v:1|c|#x:y", "a,=v:1|c|#x:y", "a,k=v,,:1|g|#x:y", "_a:1|c|#k:v", "_e{1,1}:a|b|#k:v", "_sc|n|0|#k:v",
		long + ":1|c|#k:v", long + "n:1|c|#k:v", long + ":1|c|@0.5|#k:v", long + "n:1|c|@0.5|#k:v",
		"a:1|c|#k:v,k:w,source:x,host:y,source:", "a:1|c|#" + strings.Repeat("t,", 12),
	}
}

// TestDecodeHitDifferential holds the cache's fast path to the plain
// path: each hitLines line, with "\n" and "\r\n" endings, decodes through
// a warm cache (the bypass off) as without a cache, under several option
// sets; and decodeHit called on its own on a line of a cached series
// either decodes it as the uncached decoder does or leaves the batch
// untouched (it rejects nothing). The common layouts must take the fast
// path.
func TestDecodeHitDifferential(t *testing.T) {
	fast := map[string]bool{"a.b:1|c|#k:v,x:y": true, "a:2.5|ms|#k:v": true, "a:1|d|@0.25|T1700000001|#k:v": true,
		"a:1|c||#k:v": true, "a:1|c|c:abc|@0.1|#k:v": true, "a:foo|s|#k:v": true, "mé.trïc:1|c|#ünï:cödé": true}
	for _, o := range []Options{
		{SeriesCache: 64},
		{SeriesCache: 64, Flavor: FlavorEtsy},
		{SeriesCache: 64, MaxLineLen: 40, MaxTags: 2},
		{SeriesCache: 2, DefaultSource: "lambda", SourceTags: []string{"k", "host"}},
	} {
		cached := NewDecoder(o)
		cached.cache.noBypass = true
		po := o
		po.SeriesCache = 0
		plain := NewDecoder(po)
		for _, line := range hitLines() {
			for _, p := range []string{line + "\n" + line + "\n", line + "\r\n" + line + "\r\n" + line} {
				want, got := decode(plain, p), decode(cached, p)
				if !sameResult(want, got) {
					t.Fatalf("options %+v, %q (-uncached +cached):\n%s", o, p, diffResults(want, got))
				}
				if diff := diffResults(refDecode(po, p), got); diff != "" {
					t.Fatalf("options %+v, %q (-reference +cached):\n%s", o, p, diff)
				}
			}
			// decodeHit alone, the line's series cached just now (if it
			// could be).
			cached.Decode(&model.Batch{}, []byte(line), now)
			// Not known to be ASCII (as Decode calls it), and known.
			for _, ascii := range []bool{false, isASCII([]byte(line))} {
				var b model.Batch
				hits := cached.cache.hits
				hit, _ := cached.decodeHit(&b, []byte(line), now, ascii)
				got := batchResult(&b)
				switch want := decode(plain, line); {
				case hit && !sameResult(want, got):
					t.Fatalf("options %+v: decodeHit(%q, %v) (-uncached +decodeHit):\n%s", o, line, ascii, diffResults(want, got))
				case !hit && (len(b.Metrics) != 0 || len(b.Rejects) != 0 || len(b.Arena) != 0 || cached.cache.hits != hits):
					t.Fatalf("options %+v: decodeHit(%q, %v) declined but changed the batch or the cache: %+v", o, line, ascii, got)
				case !hit && fast[line] && o.MaxLineLen == 0 && o.SeriesCache > 2:
					t.Errorf("options %+v: decodeHit(%q, %v) did not take the fast path", o, line, ascii)
				}
			}
		}
	}
}

// FuzzDecodeHit holds the cache's fast path to the plain path on any
// line: decoded twice through a warm cache (the bypass off), and with its
// value replaced, as without a cache; and decodeHit on its own either
// decodes it as the uncached decoder does or leaves the batch untouched.
func FuzzDecodeHit(f *testing.F) {
	for _, l := range hitLines() {
		f.Add([]byte(l), []byte("7"))
	}
	f.Add([]byte("aws.lambda.invocations:2|c|#source:fn-10,region:us-east-1,runtime:go1.x,env:prod"), []byte("12.25"))
	opts := Options{MaxLineLen: 2048, MaxTags: 8, Flavor: FlavorEtsy}
	plain := NewDecoder(opts)
	opts.SeriesCache = 8
	cached := NewDecoder(opts)
	cached.cache.noBypass = true
	f.Fuzz(func(t *testing.T, line, value []byte) {
		lines := []string{string(line)}
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			if j := bytes.IndexByte(line[i:], '|'); j >= 0 {
				lines = append(lines, string(line[:i+1])+string(value)+string(line[i+j:]))
			}
		}
		for _, l := range lines {
			p := l + "\n" + l + "\r\n"
			if want, got := decode(plain, p), decode(cached, p); !sameResult(want, got) {
				t.Fatalf("%q (-uncached +cached):\n%s", p, diffResults(want, got))
			}
			if bytes.ContainsAny([]byte(l), "\r\n") || l == "" {
				continue
			}
			var b model.Batch
			hit, _ := cached.decodeHit(&b, []byte(l), now, false) // as Decode calls it
			got := batchResult(&b)
			if want := decode(plain, l); hit && !sameResult(want, got) {
				t.Fatalf("decodeHit(%q) (-uncached +decodeHit):\n%s", l, diffResults(want, got))
			}
			if !hit && (len(b.Metrics) != 0 || len(b.Rejects) != 0 || len(b.Arena) != 0) {
				t.Fatalf("decodeHit(%q) declined but changed the batch: %+v", l, got)
			}
		}
	})
}

// TestAppendHitSetsEveryField: appendHit writes each field of the
// metrics it appends (no literal built aside), into a dst.Metrics whose
// spare capacity may hold an earlier batch's metrics. A field added to
// model.Metric must be written there too, or it would keep such stale
// values: this count makes the addition fail here first.
func TestAppendHitSetsEveryField(t *testing.T) {
	if n := reflect.TypeOf(model.Metric{}).NumField(); n != 9 {
		t.Fatalf("model.Metric has %d fields; appendHit (cache.go) writes 9: write the new ones there, then update this count", n)
	}
	d := NewDecoder(Options{SeriesCache: DefaultSeriesCache})
	var b model.Batch
	line := []byte("lat:12.5|ms|@0.5|#a:b,c:d")
	d.Decode(&b, line, 1) // a miss: cached
	stale := model.Metric{Name: "x", Value: 9, Timestamp: 9, Source: "x", Tags: model.Tags{{Key: "x", Value: "x"}},
		Kind: model.Set, Window: model.WindowHour, Ref: 9, Series: 9}
	b.Reset()
	b.Metrics = append(b.Metrics[:0], stale, stale, stale)[:0]
	var plain model.Batch
	NewDecoder(Options{}).Decode(&plain, line, 2)
	d.Decode(&b, line, 2) // a hit, written over the stale metrics
	if len(b.Metrics) != len(plain.Metrics) || len(b.Metrics) != 2 {
		t.Fatalf("%d metrics from the hit, %d uncached; want 2 (rate 0.5)", len(b.Metrics), len(plain.Metrics))
	}
	for i, m := range b.Metrics {
		if m.Ref == 0 {
			t.Fatalf("metric %d is not a hit (no Ref)", i)
		}
		m.Ref = 0
		if !reflect.DeepEqual(m, plain.Metrics[i]) {
			t.Fatalf("hit metric %d = %+v, uncached %+v", i, m, plain.Metrics[i])
		}
	}
}
