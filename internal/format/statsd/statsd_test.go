package statsd

import (
	"fmt"
	"hash/fnv"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/les-streams/les/internal/model"
)

const now = int64(1_700_000_000_000_000_000)

type result struct {
	Metrics []model.Metric
	Logs    []model.Log
	Rejects []string // "reason: line"
}

func decode(d *Decoder, payload string) result {
	var b model.Batch
	d.Decode(&b, []byte(payload), now)
	return batchResult(&b)
}

// batchResult is b's items and rejections (the lines copied).
func batchResult(b *model.Batch) result {
	r := result{Metrics: b.Metrics, Logs: b.Logs}
	for _, rj := range b.Rejects {
		r.Rejects = append(r.Rejects, rj.Reason+": "+string(rj.Line))
	}
	return r
}

func m(name string, v float64, k model.Kind, tags ...string) model.Metric {
	mm := model.Metric{Name: name, Value: v, Kind: k, Timestamp: now}
	for _, t := range tags {
		kv := strings.SplitN(t, "=", 2)
		mm.Tags = append(mm.Tags, model.Tag{Key: kv[0], Value: kv[1]})
	}
	return mm
}

func withSrc(mm model.Metric, src string) model.Metric { mm.Source = src; return mm }
func withTS(mm model.Metric, ts int64) model.Metric    { mm.Timestamp = ts; return mm }
func rep(mm model.Metric, n int) []model.Metric {
	out := make([]model.Metric, n)
	for i := range out {
		out[i] = mm
	}
	return out
}
func rj(reason, line string) result { return result{Rejects: []string{reason + ": " + line}} }
func ms(x ...model.Metric) result   { return result{Metrics: x} }

func TestDecode(t *testing.T) {
	long := "a:1|c|#" + strings.Repeat("x", 9000)
	var manyTags []string
	for i := range 101 {
		manyTags = append(manyTags, fmt.Sprintf("t%d:v", i))
	}
	tooMany := "a:1|c|#" + strings.Join(manyTags, ",")
	okTags := "a:1|c|#" + strings.Join(manyTags[:100], ",")
	var want100 []string
	for _, tg := range manyTags[:100] {
		want100 = append(want100, strings.Replace(tg, ":", "=", 1))
	}
	ok100 := m("a", 1, model.Counter, want100...)
	model.SortTags(ok100.Tags)

	cases := []struct {
		name string
		in   string
		want result
	}{
		{"counter", "hits:1|c", ms(m("hits", 1, model.Counter))},
		{"counter float", "hits:2.5|c", ms(m("hits", 2.5, model.Counter))},
		{"counter negative", "hits:-3|c", ms(m("hits", -3, model.Counter))},
		{"counter rate", "hits:1|c|@0.1", ms(m("hits", 10, model.Counter))},
		{"counter rate 1", "hits:4|c|@1", ms(m("hits", 4, model.Counter))},
		{"counter rate half", "hits:3|c|@0.5", ms(m("hits", 6, model.Counter))},
		{"gauge", "temp:21.5|g", ms(m("temp", 21.5, model.Gauge))},
		{"gauge zero", "temp:0|g", ms(m("temp", 0, model.Gauge))},
		{"gauge plus", "temp:+3|g", ms(m("temp", 3, model.Gauge))},
		{"gauge minus", "temp:-3|g", ms(m("temp", -3, model.Gauge))},
		{"gauge rate ignored", "temp:5|g|@0.5", ms(m("temp", 5, model.Gauge))},
		{"timer", "lat:320|ms", ms(m("lat", 320, model.Sample))},
		{"histogram", "size:10|h", ms(m("size", 10, model.Sample))},
		{"distribution", "dur:1.5|d", ms(m("dur", 1.5, model.Sample))},
		{"timer rate 0.1", "lat:5|ms|@0.1", ms(rep(m("lat", 5, model.Sample), 10)...)},
		{"timer rate 0.3", "lat:5|ms|@0.3", ms(rep(m("lat", 5, model.Sample), 3)...)},
		{"timer rate tiny capped", "lat:5|ms|@0.0001", ms(rep(m("lat", 5, model.Sample), 100)...)},
		{"set", "users:alice|s", ms(m("users", SetValue([]byte("alice")), model.Set))},
		{"set with colon", "users:a:b|s", ms(m("users", SetValue([]byte("a:b")), model.Set))},
		{"set empty member", "users:|s", rj(ReasonInvalidValue, "users:|s")},
		{"packed", "lat:1:2:3|ms", ms(m("lat", 1, model.Sample), m("lat", 2, model.Sample), m("lat", 3, model.Sample))},
		{"packed bad", "lat:1:x:3|ms", rj(ReasonInvalidValue, "lat:1:x:3|ms")},
		{"tags", "a:1|c|#env:prod,role:web", ms(m("a", 1, model.Counter, "env=prod", "role=web"))},
		{"tags sorted", "a:1|c|#z:1,b:2,m:3", ms(m("a", 1, model.Counter, "b=2", "m=3", "z=1"))},
		{"tag no value", "a:1|c|#flag,env:x", ms(m("a", 1, model.Counter, "env=x", "flag="))},
		{"tag value with colon", "a:1|c|#url:http://x", ms(m("a", 1, model.Counter, "url=http://x"))},
		{"tag duplicate key", "a:1|c|#k:2,k:1", ms(m("a", 1, model.Counter, "k=1"))},
		{"tag empty skipped", "a:1|c|#,,k:v,", ms(m("a", 1, model.Counter, "k=v"))},
		{"tags then rate", "a:1|c|#k:v|@0.5", ms(m("a", 2, model.Counter, "k=v"))},
		{"source tag", "a:1|c|#source:web1,k:v", ms(withSrc(m("a", 1, model.Counter, "k=v"), "web1"))},
		{"host tag", "a:1|c|#host:h1", ms(withSrc(m("a", 1, model.Counter), "h1"))},
		{"source beats host", "a:1|c|#host:h1,source:s1", ms(withSrc(m("a", 1, model.Counter), "s1"))},
		{"source beats host reversed", "a:1|c|#source:s1,host:h1", ms(withSrc(m("a", 1, model.Counter), "s1"))},
		{"timestamp", "a:1|c|T1700000100", ms(withTS(m("a", 1, model.Counter), 1700000100e9))},
		{"container ignored", "a:1|c|c:abc123|#k:v", ms(m("a", 1, model.Counter, "k=v"))},
		{"unknown ext ignored", "a:1|c|e:it-false|card:low", ms(m("a", 1, model.Counter))},
		{"crlf", "a:1|c\r\n", ms(m("a", 1, model.Counter))},
		{"empty lines", "\n\na:1|c\n\n", ms(m("a", 1, model.Counter))},
		{"multi line", "a:1|c\nb:2|g\nc:3|ms", ms(m("a", 1, model.Counter), m("b", 2, model.Gauge), m("c", 3, model.Sample))},
		{"bad then good", "junk\nb:2|g", result{Metrics: []model.Metric{m("b", 2, model.Gauge)}, Rejects: []string{"invalid_line: junk"}}},
		{"no colon", "abc|c", rj(ReasonInvalidLine, "abc|c")},
		{"no bar", "abc:1", rj(ReasonInvalidLine, "abc:1")},
		{"bar before colon", "a|b:1", rj(ReasonInvalidLine, "a|b:1")},
		{"empty name", ":1|c", rj(ReasonEmptyName, ":1|c")},
		{"unknown type", "a:1|x", rj(ReasonUnknownType, "a:1|x")},
		{"empty type", "a:1|", rj(ReasonUnknownType, "a:1|")},
		{"invalid value", "a:abc|c", rj(ReasonInvalidValue, "a:abc|c")},
		{"empty value", "a:|c", rj(ReasonInvalidValue, "a:|c")},
		{"nan", "a:NaN|g", rj(ReasonNonFiniteValue, "a:NaN|g")},
		{"inf", "a:+Inf|ms", rj(ReasonNonFiniteValue, "a:+Inf|ms")},
		{"overflow", "a:1e400|c", rj(ReasonNonFiniteValue, "a:1e400|c")},
		{"counter rate overflow", "a:1e308|c|@0.01", rj(ReasonNonFiniteValue, "a:1e308|c|@0.01")},
		{"rate zero", "a:1|c|@0", rj(ReasonInvalidSampleRate, "a:1|c|@0")},
		{"rate above one", "a:1|c|@1.5", rj(ReasonInvalidSampleRate, "a:1|c|@1.5")},
		{"rate negative", "a:1|c|@-0.5", rj(ReasonInvalidSampleRate, "a:1|c|@-0.5")},
		{"rate garbage", "a:1|c|@x", rj(ReasonInvalidSampleRate, "a:1|c|@x")},
		{"bad timestamp", "a:1|c|Tabc", rj(ReasonInvalidTimestamp, "a:1|c|Tabc")},
		{"100 tags ok", okTags, ms(ok100)},
		{"too many tags", tooMany, rj(ReasonTooManyTags, tooMany)},
		{"line too long", long, rj(ReasonLineTooLong, long)},
		{"invalid utf8", "a\xff:1|c", rj(ReasonInvalidUTF8, "a\xff:1|c")},
		{"utf8 name", "température:1|g", ms(m("température", 1, model.Gauge))},
		{"event", "_e{5,4}:title|text", result{Logs: []model.Log{{Timestamp: now, Level: "INFO", Message: []byte("text"), Attrs: model.Tags{{Key: "title", Value: "title"}}}}}},
		{"event full", "_e{2,3}:hi|abc|d:1700000000|h:web|p:low|t:error|k:agg|s:src|#env:prod", result{Logs: []model.Log{{
			Timestamp: 1700000000e9, Source: "web", Level: "ERROR", Message: []byte("abc"),
			Attrs: model.Tags{{Key: "aggregation_key", Value: "agg"}, {Key: "env", Value: "prod"}, {Key: "priority", Value: "low"}, {Key: "source_type_name", Value: "src"}, {Key: "title", Value: "hi"}},
		}}}},
		{"event text with bar", "_e{1,3}:t|a|b", result{Logs: []model.Log{{Timestamp: now, Level: "INFO", Message: []byte("a|b"), Attrs: model.Tags{{Key: "title", Value: "t"}}}}}},
		{"event bad len", "_e{9,4}:title|text", rj(ReasonInvalidEvent, "_e{9,4}:title|text")},
		{"event no brace", "_e{5,4title|text", rj(ReasonInvalidEvent, "_e{5,4title|text")},
		{"event bad ts", "_e{1,1}:t|x|d:abc", rj(ReasonInvalidEvent, "_e{1,1}:t|x|d:abc")},
		{"service check", "_sc|db.up|2|h:db1|#env:prod|m:down hard", result{Logs: []model.Log{{
			Timestamp: now, Source: "db1", Level: "CRITICAL", Message: []byte("down hard"),
			Attrs: model.Tags{{Key: "check", Value: "db.up"}, {Key: "env", Value: "prod"}},
		}}}},
		{"service check ok", "_sc|x|0", result{Logs: []model.Log{{Timestamp: now, Level: "OK", Attrs: model.Tags{{Key: "check", Value: "x"}}}}}},
		{"service check bad status", "_sc|x|7", rj(ReasonInvalidEvent, "_sc|x|7")},
		{"service check no name", "_sc||0", rj(ReasonInvalidEvent, "_sc||0")},
		{"underscore metric", "_x:1|c", ms(m("_x", 1, model.Counter))},
		{"telegraf tags", "hits,env=prod,role=web:1|c", ms(m("hits", 1, model.Counter, "env=prod", "role=web"))},
		{"telegraf and dogstatsd tags", "hits,env=prod:2|c|@0.5|#zone:a", ms(m("hits", 4, model.Counter, "env=prod", "zone=a"))},
		{"telegraf host tag", "hits,host=h1,k=v:1|c", ms(withSrc(m("hits", 1, model.Counter, "k=v"), "h1"))},
		{"telegraf tag no value", "hits,flag:1|c", ms(m("hits", 1, model.Counter, "flag="))},
		{"telegraf empty tags", "hits,,:1|c", ms(m("hits", 1, model.Counter))},
		{"telegraf empty name", ",env=prod:1|c", rj(ReasonEmptyName, ",env=prod:1|c")},
		{"telegraf set", "users,env=prod:alice|s", ms(m("users", SetValue([]byte("alice")), model.Set, "env=prod"))},
		{"event alert success", "_e{1,1}:t|x|t:success", result{Logs: []model.Log{{Timestamp: now, Level: "SUCCESS", Message: []byte("x"), Attrs: model.Tags{{Key: "title", Value: "t"}}}}}},
		{"event alert unknown", "_e{1,1}:t|x|t:panic", result{Logs: []model.Log{{Timestamp: now, Level: "INFO", Message: []byte("x"), Attrs: model.Tags{{Key: "title", Value: "t"}}}}}},
		{"event escaped newline", `_e{4,6}:a\nb|x\ny\n`, result{Logs: []model.Log{{Timestamp: now, Level: "INFO", Message: []byte("x\ny\n"), Attrs: model.Tags{{Key: "title", Value: "a\nb"}}}}}},
	}
	if len(cases) < 50 {
		t.Fatalf("only %d cases", len(cases))
	}
	d := NewDecoder(Options{})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := decode(d, c.in)
			if diff := cmp.Diff(c.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Decode(%q) mismatch (-want +got):\n%s", c.in, diff)
			}
		})
	}
}

// The bytes real DogStatsD clients write, from their source:
//
//   - datadog-go statsd/format.go: appendGauge writes the value with
//     strconv.AppendFloat(v, 'f', -1): Gauge("g", 10) is "g:10|g",
//     Gauge("g", -5) is "g:-5|g"; appendEvent escapes each newline of the
//     text as `\n` and counts the escaped length.
//   - hot-shots lib/statsFunctions.js: gauge(stat, v) sends `${v}` ("-5"),
//     gaugeDelta(stat, v) sends `${sign}${Math.abs(v)}` ("+3", "-5"); its
//     event() replaces "\n" by `\n` and uses the escaped length; in
//     telegraf mode lib/statsd.js send() puts the tags after the name,
//     joined by ",", with ':' replaced by '=' ("name,env=prod:1|c").
func TestClientBytes(t *testing.T) {
	g := func(v float64, k model.Kind, tags ...string) model.Metric { return m("g", v, k, tags...) }
	cases := []struct {
		name   string
		flavor Flavor
		in     string
		want   []model.Metric
	}{
		// datadog-go: Gauge("g", 10, nil, 1); Gauge("g", -5, nil, 1). The
		// Datadog agent keeps -5: a DogStatsD gauge is always absolute.
		{"datadog-go gauges", FlavorDogStatsD, "g:10|g\ng:-5|g", []model.Metric{g(10, model.Gauge), g(-5, model.Gauge)}},
		// datadog-go: Gauge("g", -0.5, []string{"env:prod"}, 1)
		{"datadog-go tagged", FlavorDogStatsD, "g:-0.5|g|#env:prod", []model.Metric{g(-0.5, model.Gauge, "env=prod")}},
		// hot-shots (DogStatsD mode): gauge("g", 10); gauge("g", -5)
		{"hot-shots gauges", FlavorDogStatsD, "g:10|g\ng:-5|g", []model.Metric{g(10, model.Gauge), g(-5, model.Gauge)}},
		// hot-shots against an Etsy statsd: gauge("g", 10);
		// gaugeDelta("g", 3); gaugeDelta("g", -5) → 10, +3, -5 as changes.
		{"hot-shots gaugeDelta etsy", FlavorEtsy, "g:10|g\ng:+3|g\ng:-5|g", []model.Metric{g(10, model.Gauge), g(3, model.GaugeDelta), g(-5, model.GaugeDelta)}},
		// hot-shots telegraf mode, globalTags {env: "prod"}: gauge("g", 5);
		// gaugeDelta("g", -2); increment("hits", 1, 0.5).
		{"hot-shots telegraf", FlavorEtsy, "g,env=prod:5|g\ng,env=prod:-2|g\nhits,env=prod:1|c|@0.5",
			[]model.Metric{g(5, model.Gauge, "env=prod"), g(-2, model.GaugeDelta, "env=prod"), m("hits", 2, model.Counter, "env=prod")}},
		{"hot-shots telegraf dogstatsd", FlavorDogStatsD, "g,env=prod:-2|g", []model.Metric{g(-2, model.Gauge, "env=prod")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := decode(NewDecoder(Options{Flavor: c.flavor}), c.in)
			if diff := cmp.Diff(ms(c.want...), got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Decode(%q) (-want +got):\n%s", c.in, diff)
			}
		})
	}

	// datadog-go Event{Title: "deploy", Text: "checkout v42 deployed\nsecond
	// line", AlertType: Error} and hot-shots event("deploy", same text,
	// {alert_type: "error"}) both write this line.
	ev := `_e{6,34}:deploy|checkout v42 deployed\nsecond line|t:error`
	got := decode(NewDecoder(Options{}), ev)
	want := result{Logs: []model.Log{{Timestamp: now, Level: "ERROR", Message: []byte("checkout v42 deployed\nsecond line"),
		Attrs: model.Tags{{Key: "title", Value: "deploy"}}}}}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("event (-want +got):\n%s", diff)
	}
}

func TestParseFlavor(t *testing.T) {
	for in, want := range map[string]Flavor{"": FlavorDogStatsD, "dogstatsd": FlavorDogStatsD, "etsy": FlavorEtsy} {
		if f, ok := ParseFlavor(in); !ok || f != want {
			t.Errorf("ParseFlavor(%q) = %v, %v", in, f, ok)
		}
	}
	if _, ok := ParseFlavor("DogStatsD"); ok {
		t.Error("ParseFlavor accepted a misspelt flavor")
	}
}

func TestOptions(t *testing.T) {
	d := NewDecoder(Options{DefaultSource: "lambda", SourceTags: []string{"fn"}, MaxTags: 1, MaxLineLen: 20})
	got := decode(d, "a:1|c|#fn:f1,host:h\nb:1|c\nc:1|c|#a:1,b:2\nxxxxxxxxxxxxxxxxxxx:1|c")
	want := result{
		Metrics: []model.Metric{withSrc(m("a", 1, model.Counter, "host=h"), "f1"), withSrc(m("b", 1, model.Counter), "lambda")},
		Rejects: []string{"too_many_tags: c:1|c|#a:1,b:2", "line_too_long: xxxxxxxxxxxxxxxxxxx:1|c"},
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Error(diff)
	}
}

func TestRejectTruncatesTags(t *testing.T) {
	var b model.Batch
	NewDecoder(Options{}).Decode(&b, []byte("a:1|c|#k:v|@7\nb:1|c|#x:y"), now)
	if len(b.Arena) != 1 || b.Arena[0].Key != "x" {
		t.Fatalf("arena = %v, want only the accepted line's tag", b.Arena)
	}
}

func TestSetValueStable(t *testing.T) {
	h := fnv.New64a()
	h.Write([]byte("alice"))
	if got, want := SetValue([]byte("alice")), float64(h.Sum64()&(1<<53-1)); got != want {
		t.Fatalf("SetValue = %v, want %v", got, want)
	}
	if SetValue([]byte("a")) == SetValue([]byte("b")) {
		t.Fatal("collision on a/b")
	}
	if v := SetValue([]byte("x")); v != math.Trunc(v) || v >= 1<<53 {
		t.Fatalf("not a 53-bit integer: %v", v)
	}
}

func datagram(lines int) []byte {
	var sb strings.Builder
	kinds := []string{"c", "g", "ms", "h", "d"}
	for i := range lines {
		fmt.Fprintf(&sb, "app.request.latency_%d:%d.5|%s|@1|#env:prod,service:api,region:us-east-1,host:web-%d\n", i%7, i*13, kinds[i%len(kinds)], i%3)
	}
	return []byte(sb.String())
}

func TestDecodeAllocs(t *testing.T) {
	d := NewDecoder(Options{})
	p := datagram(20)
	var b model.Batch
	d.Decode(&b, p, now)
	if len(b.Metrics) != 20 || len(b.Rejects) != 0 {
		t.Fatalf("got %d metrics, %d rejects", len(b.Metrics), len(b.Rejects))
	}
	allocs := testing.AllocsPerRun(100, func() {
		b.Reset()
		d.Decode(&b, p, now)
	})
	if allocs != 0 {
		t.Fatalf("Decode allocates %v times per 20-line datagram, want 0", allocs)
	}
	tg := telegrafDatagram(20)
	d.Decode(&b, tg, now)
	allocs = testing.AllocsPerRun(100, func() {
		b.Reset()
		d.Decode(&b, tg, now)
	})
	if len(b.Metrics) != 20 || len(b.Metrics[0].Tags) != 3 || allocs != 0 {
		t.Fatalf("Telegraf-style datagram: %d metrics, tags %v, %v allocs; want 20 metrics, 3 tags, 0 allocs", len(b.Metrics), b.Metrics[0].Tags, allocs)
	}
	realistic := realisticDatagrams(16, 31)
	decodeAll := func() {
		for _, p := range realistic {
			b.Reset()
			d.Decode(&b, p, now)
		}
	}
	decodeAll()
	if allocs := testing.AllocsPerRun(20, decodeAll); allocs != 0 {
		t.Fatalf("Decode allocates %v times per 16 realistic datagrams, want 0", allocs)
	}
}

// telegrafDatagram is datagram with the tags after the name, as hot-shots'
// telegraf mode writes them.
func telegrafDatagram(lines int) []byte {
	var sb strings.Builder
	kinds := []string{"c", "g", "ms", "h", "d"}
	for i := range lines {
		fmt.Fprintf(&sb, "app.request.latency_%d,env=prod,service=api,region=us-east-1,host=web-%d:%d.5|%s|@1\n", i%7, i%3, i*13, kinds[i%len(kinds)])
	}
	return []byte(sb.String())
}

func BenchmarkDecode(b *testing.B) {
	d := NewDecoder(Options{})
	p := datagram(20)
	var batch model.Batch
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		batch.Reset()
		d.Decode(&batch, p, now)
	}
	b.ReportMetric(float64(20*b.N)/b.Elapsed().Seconds(), "lines/s")
}

func BenchmarkDecodeTelegraf(b *testing.B) {
	d := NewDecoder(Options{})
	p := telegrafDatagram(20)
	var batch model.Batch
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		batch.Reset()
		d.Decode(&batch, p, now)
	}
	b.ReportMetric(float64(20*b.N)/b.Elapsed().Seconds(), "lines/s")
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"a:1|c", "a:1|c|@0.1|#k:v,host:h|T1700000000", "a:+1|g", "a:-1|g", "a:1:2|ms", "u:x|s",
		"a,k=v,host=h:1|c|#x:y", "a,k=v,,=:1|c", ",x=y:1|g", `_e{4,6}:a\nb|x\ny\n|t:warning`,
		"_e{1,1}:t|x|d:1|h:h|#a:b", "_sc|n|0|m:msg", string(datagram(3)), "a:1|c\r\n\nb:2|x",
		string(realisticDatagrams(1, 4)[0]), "a:1,5|c", "a:2.50|ms|@0.25|#region:x,route:/,runtime:go,env:prod,version:1",
		"a:12345678901234567|g", "a:-.5|g|#abcdefgh1:x,abcdefgh:y,abcdefgh1:w",
	} {
		f.Add([]byte(s))
	}
	opts := Options{MaxLineLen: 512, MaxTags: 8}
	d := NewDecoder(opts)
	etsyOpts := Options{MaxLineLen: 512, MaxTags: 8, Flavor: FlavorEtsy}
	etsy := NewDecoder(etsyOpts)
	// A series cache kept warm across inputs (and full every few lines).
	cachedOpts := Options{MaxLineLen: 512, MaxTags: 8, SeriesCache: 16}
	cached := NewDecoder(cachedOpts)
	cached.cache.noBypass = true // every metric line through the cache
	f.Fuzz(func(t *testing.T, p []byte) {
		// The same items and rejections as the reference decoder.
		want := refDecode(opts, string(p))
		if diff := diffResults(want, decode(d, string(p))); diff != "" {
			t.Fatalf("Decode(%q) (-reference +got):\n%s", p, diff)
		}
		if diff := diffResults(want, decode(cached, string(p))); diff != "" {
			t.Fatalf("cached Decode(%q) (-reference +got):\n%s", p, diff)
		}
		if diff := diffResults(refDecode(etsyOpts, string(p)), decode(etsy, string(p))); diff != "" {
			t.Fatalf("etsy Decode(%q) (-reference +got):\n%s", p, diff)
		}
		var b model.Batch
		d.Decode(&b, p, now)
		etsy.Decode(&b, p, now)
		for _, mm := range b.Metrics {
			if mm.Name == "" || !model.IsFinite(mm.Value) {
				t.Fatalf("bad metric %+v", mm)
			}
			if len(mm.Tags) > 8 {
				t.Fatalf("too many tags %d", len(mm.Tags))
			}
			for i := 1; i < len(mm.Tags); i++ {
				if mm.Tags[i-1].Key >= mm.Tags[i].Key {
					t.Fatalf("tags not sorted/unique: %v", mm.Tags)
				}
			}
		}
		for _, r := range b.Rejects {
			if r.Reason == "" {
				t.Fatal("empty reason")
			}
		}
	})
}
