package wavefront

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/les-streams/les/internal/model"
)

// now is 2026-01-01T00:00:00Z; base is ten minutes earlier, a minute boundary.
const (
	nowSec  = 1767225600
	now     = int64(nowSec) * 1e9
	baseSec = nowSec - 600
	base    = int64(baseSec) * 1e9
)

func tags(kv ...string) model.Tags {
	if len(kv) == 0 {
		return nil
	}
	t := make(model.Tags, 0, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		t = append(t, model.Tag{Key: kv[i], Value: kv[i+1]})
	}
	model.SortTags(t)
	return t
}

func gauge(name string, v float64, ts int64, src string, kv ...string) *model.Metric {
	return &model.Metric{Name: name, Value: v, Timestamp: ts, Source: src, Tags: tags(kv...), Kind: model.Gauge}
}

func counter(name string, v float64, ts int64, src string, kv ...string) *model.Metric {
	m := gauge(name, v, ts, src, kv...)
	m.Kind = model.Counter
	return m
}

func sample(name string, v float64, ts int64, w model.Window, kv ...string) *model.Metric {
	m := gauge(name, v, ts, "unknown", kv...)
	m.Kind, m.Window = model.Sample, w
	return m
}

// dist builds a distribution from value,count pairs (already sorted by value).
func dist(name string, ts int64, w model.Window, src string, cs []model.Centroid, kv ...string) *model.Distribution {
	d := &model.Distribution{Name: name, Timestamp: ts, Window: w, Source: src, Tags: tags(kv...), Centroids: cs}
	d.Min, d.Max = cs[0].Value, cs[len(cs)-1].Value
	for _, c := range cs {
		d.Count += c.Count
		d.Sum += c.Count * c.Value
	}
	return d
}

func cents(vc ...float64) []model.Centroid {
	var cs []model.Centroid
	for i := 0; i < len(vc); i += 2 {
		cs = append(cs, model.Centroid{Value: vc[i], Count: vc[i+1]})
	}
	return cs
}

func span(name, trace, id, parent string, start, dur int64, src string, kv ...string) *model.Span {
	return &model.Span{Name: name, TraceID: trace, SpanID: id, ParentID: parent, Start: start, Duration: dur, Source: src, Tags: tags(kv...)}
}

// nTags returns " k0=v k1=v ... k(n-1)=v".
func nTags(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(" k")
		b.WriteString(strconv.Itoa(i))
		b.WriteString("=v")
	}
	return b.String()
}

func nTagList(n int) []string {
	kv := make([]string, 0, 2*n)
	for i := range n {
		kv = append(kv, "k"+strconv.Itoa(i), "v")
	}
	return kv
}

func nCentroids(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(" #1 ")
		b.WriteString(strconv.Itoa(i))
	}
	return b.String()
}

type golden struct {
	name   string
	opts   Options
	in     string
	metric *model.Metric
	dist   *model.Distribution
	span   *model.Span
	reject string
}

var (
	metrics = Options{Mode: ModeMetrics}
	trace   = Options{Mode: ModeTrace}
)

func goldenCases() []golden {
	rep := strings.Repeat
	sp := func(start, dur int64) *model.Span {
		return span("op", "t1", "s1", "", start, dur, "unknown")
	}
	return []golden{
		// Metric lines: basics.
		{name: "bare", in: "cpu.load 0.42", metric: gauge("cpu.load", 0.42, now, "unknown")},
		{name: "full", in: "cpu.load 0.42 " + strconv.Itoa(baseSec) + ` source=web01 env="prod east"`, metric: gauge("cpu.load", 0.42, base, "web01", "env", "prod east")},
		{name: "tag", in: "m 1 k=v", metric: gauge("m", 1, now, "unknown", "k", "v")},
		{name: "tag spaced eq", in: "m 1 k = v", metric: gauge("m", 1, now, "unknown", "k", "v")},
		{name: "tag eq then space", in: "m 1 k= v", metric: gauge("m", 1, now, "unknown", "k", "v")},
		{name: "tag space then eq", in: "m 1 k =v", metric: gauge("m", 1, now, "unknown", "k", "v")},
		{name: "tabs", in: "m\t1\tk=v", metric: gauge("m", 1, now, "unknown", "k", "v")},
		{name: "tags sorted", in: "m 1 z=1 a=2 m=3", metric: gauge("m", 1, now, "unknown", "a", "2", "m", "3", "z", "1")},
		{name: "digit tag key quirk", in: "m 1 2xx=y", reject: ReasonInvalidTimestamp},
		{name: "digit tag key after ts", in: "m 1 " + strconv.Itoa(baseSec) + " 2xx=y", metric: gauge("m", 1, base, "unknown", "2xx", "y")},
		{name: "quoted name", in: `"cpu.load" 1`, metric: gauge("cpu.load", 1, now, "unknown")},
		{name: "quoted name with space", in: `"cpu load" 1`, reject: ReasonInvalidName},
		{name: "quoted value with space and eq", in: `m 1 k="a b=c"`, metric: gauge("m", 1, now, "unknown", "k", "a b=c")},
		{name: "escaped double quote", in: `m 1 k="say \"hi\""`, metric: gauge("m", 1, now, "unknown", "k", `say "hi"`)},
		{name: "backslash kept", in: `m 1 k="a\b\n"`, metric: gauge("m", 1, now, "unknown", "k", `a\b\n`)},
		{name: "single quotes", in: `m 1 k='a b'`, metric: gauge("m", 1, now, "unknown", "k", "a b")},
		{name: "escaped single quote", in: `m 1 k='it\'s'`, metric: gauge("m", 1, now, "unknown", "k", "it's")},
		{name: "nested quotes", in: `m 1 k='say "x"' j="it's"`, metric: gauge("m", 1, now, "unknown", "j", "it's", "k", `say "x"`)},
		{name: "quoted key", in: `m 1 "k"="v"`, metric: gauge("m", 1, now, "unknown", "k", "v")},
		{name: "unmatched quote", in: `m 1 k="abc`, reject: ReasonUnmatchedQuote},
		{name: "quote ending in backslash", in: `m 1 k="abc\"`, reject: ReasonUnmatchedQuote},
		{name: "unmatched single quote", in: `m 1 k='abc`, reject: ReasonUnmatchedQuote},

		// Source and host.
		{name: "source", in: "m 1 source=a", metric: gauge("m", 1, now, "a")},
		{name: "host", in: "m 1 host=b", metric: gauge("m", 1, now, "b")},
		{name: "source and host", in: "m 1 source=a host=b", metric: gauge("m", 1, now, "a", "_host", "b")},
		{name: "host and source", in: "m 1 host=b source=a k=v", metric: gauge("m", 1, now, "a", "_host", "b", "k", "v")},
		{name: "host overrides _host", in: "m 1 host=b source=a _host=z", metric: gauge("m", 1, now, "a", "_host", "b")},
		{name: "host overrides empty _host", in: `m 1 source=a host=b _host=""`, metric: gauge("m", 1, now, "a", "_host", "b")},
		{name: "empty _host kept is rejected", in: `m 1 _host=""`, reject: ReasonEmptyTagValue},
		{name: "empty host moved is rejected", in: `m 1 source=a host=""`, reject: ReasonEmptyTagValue},
		{name: "tag renamed", in: "m 1 tag=x", metric: gauge("m", 1, now, "unknown", "_tag", "x")},
		{name: "tag overrides _tag", in: "m 1 _tag=y tag=x", metric: gauge("m", 1, now, "unknown", "_tag", "x")},
		{name: "duplicate key last wins", in: "m 1 k=1 a=0 k=2", metric: gauge("m", 1, now, "unknown", "a", "0", "k", "2")},
		{name: "duplicate source last wins", in: "m 1 source=a source=b", metric: gauge("m", 1, now, "b")},
		{name: "duplicate with bad first value", in: `m 1 k="" k=v`, metric: gauge("m", 1, now, "unknown", "k", "v")},
		{name: "default source option", opts: Options{DefaultSource: "lambda"}, in: "m 1", metric: gauge("m", 1, now, "lambda")},
		{name: "empty source", in: `m 1 source=""`, reject: ReasonEmptyTagValue},
		{name: "source 1023", in: "m 1 source=" + rep("s", 1023), metric: gauge("m", 1, now, rep("s", 1023))},
		{name: "source 1024", in: "m 1 source=" + rep("s", 1024), reject: ReasonSourceTooLong},

		// Timestamps.
		{name: "ts seconds", in: "m 1 " + strconv.Itoa(baseSec), metric: gauge("m", 1, base, "unknown")},
		{name: "ts millis", in: "m 1 " + strconv.Itoa(baseSec) + "123", metric: gauge("m", 1, base+123e6, "unknown")},
		{name: "ts micros", in: "m 1 " + strconv.Itoa(baseSec) + "123456", metric: gauge("m", 1, base+123456e3, "unknown")},
		{name: "ts nanos", in: "m 1 " + strconv.Itoa(baseSec) + "123456789", metric: gauge("m", 1, base+123456789, "unknown")},
		{name: "ts fractional seconds", in: "m 1 " + strconv.Itoa(baseSec) + ".246", metric: gauge("m", 1, base+246e6, "unknown")},
		{name: "ts fractional ns digits", in: "m 1 " + strconv.Itoa(baseSec) + ".1234567891", metric: gauge("m", 1, base+123456789, "unknown")},
		{name: "ts fractional millis", in: "m 1 " + strconv.Itoa(baseSec) + "123.5", metric: gauge("m", 1, base+123e6+500e3, "unknown")},
		{name: "ts exponent", in: "m 1 1.7672250e9", metric: gauge("m", 1, base, "unknown")},
		{name: "ts garbage", in: "m 1 17x", reject: ReasonInvalidTimestamp},
		{name: "ts two years old", in: "m 1 " + strconv.Itoa(nowSec-2*365*86400), reject: ReasonTimestampOutOfRange},
		{name: "ts 300 days old", in: "m 1 " + strconv.Itoa(nowSec-300*86400), metric: gauge("m", 1, now-300*86400e9, "unknown")},
		{name: "ts two days ahead", in: "m 1 " + strconv.Itoa(nowSec+2*86400), reject: ReasonTimestampOutOfRange},
		{name: "ts 23h ahead", in: "m 1 " + strconv.Itoa(nowSec+23*3600), metric: gauge("m", 1, now+23*3600e9, "unknown")},
		{name: "ts exactly prefill bound", in: "m 1 " + strconv.Itoa(nowSec+24*3600), reject: ReasonTimestampOutOfRange},
		{name: "ts zero", in: "m 1 0", reject: ReasonTimestampOutOfRange},
		{name: "ts beyond int64", in: "m 1 99999999999", reject: ReasonTimestampOutOfRange},
		{name: "custom cutoffs", opts: Options{BackfillCutoff: time.Hour}, in: "m 1 " + strconv.Itoa(nowSec-7200), reject: ReasonTimestampOutOfRange},

		// Values.
		{name: "value exp", in: "m 93.123e3", metric: gauge("m", 93123, now, "unknown")},
		{name: "value neg exp", in: "m -93.123e-3", metric: gauge("m", -93.123e-3, now, "unknown")},
		{name: "value big", in: "m 9.22337186120781e+18", metric: gauge("m", 9.22337186120781e+18, now, "unknown")},
		{name: "value plus", in: "m +5", metric: gauge("m", 5, now, "unknown")},
		{name: "value hex float", in: "m 0x1p3", metric: gauge("m", 8, now, "unknown")},
		{name: "value quoted", in: `m "2.5"`, metric: gauge("m", 2.5, now, "unknown")},
		{name: "value NaN", in: "m NaN", reject: ReasonNonFiniteValue},
		{name: "value nan", in: "m nan", reject: ReasonNonFiniteValue},
		{name: "value Infinity", in: "m Infinity", reject: ReasonNonFiniteValue},
		{name: "value -Inf", in: "m -Inf", reject: ReasonNonFiniteValue},
		{name: "value overflow", in: "m 1e400", reject: ReasonNonFiniteValue},
		{name: "value text", in: "m abc", reject: ReasonInvalidValue},
		{name: "value java suffix", in: "m 1d", reject: ReasonInvalidValue},
		{name: "value eq", in: "m = 1", reject: ReasonInvalidValue},
		{name: "missing value", in: "cpu.load", reject: ReasonMissingValue},

		// Names.
		{name: "name charset", in: "a-b_c,d/e.F9 1", metric: gauge("a-b_c,d/e.F9", 1, now, "unknown")},
		{name: "name dollar", in: "bad$name 1", reject: ReasonInvalidName},
		{name: "name colon", in: "a:b 1", reject: ReasonInvalidName},
		{name: "name tilde", in: "~proxy.x 1", metric: gauge("~proxy.x", 1, now, "unknown")},
		{name: "name inner tilde", in: "a~b 1", reject: ReasonInvalidName},
		{name: "delta increment", in: "∆req.count 3", metric: counter("∆req.count", 3, now, "unknown")},
		{name: "delta greek", in: "Δreq.count 3", metric: counter("Δreq.count", 3, now, "unknown")},
		{name: "delta tilde", in: "∆~req 1", metric: counter("∆~req", 1, now, "unknown")},
		{name: "delta zero", in: "∆req 0", reject: ReasonNonPositiveDelta},
		{name: "delta negative", in: "Δreq -1", reject: ReasonNonPositiveDelta},
		{name: "name 1023", in: rep("n", 1023) + " 1", metric: gauge(rep("n", 1023), 1, now, "unknown")},
		{name: "name 1024", in: rep("n", 1024) + " 1", reject: ReasonNameTooLong},
		{name: "delta name 1023 chars", in: "∆" + rep("n", 1022) + " 1", metric: counter("∆"+rep("n", 1022), 1, now, "unknown")},
		{name: "empty quoted name", in: `"" 1`, reject: ReasonInvalidName},

		// Tags.
		{name: "tag key invalid", in: "m 1 k$=v", reject: ReasonInvalidTagKey},
		{name: "tag key tilde", in: "m 1 ~k=v", metric: gauge("m", 1, now, "unknown", "~k", "v")},
		{name: "tag value unicode", in: "m 1 k=héllo", metric: gauge("m", 1, now, "unknown", "k", "héllo")},
		{name: "empty tag value", in: `m 1 k=""`, reject: ReasonEmptyTagValue},
		{name: "blank tag value", in: `m 1 k="  "`, reject: ReasonEmptyTagValue},
		{name: "tag 254", in: "m 1 " + rep("k", 200) + "=" + rep("v", 54), metric: gauge("m", 1, now, "unknown", rep("k", 200), rep("v", 54))},
		{name: "tag 255", in: "m 1 " + rep("k", 200) + "=" + rep("v", 55), reject: ReasonTagTooLong},
		{name: "tag key 254", in: "m 1 " + rep("k", 254) + "=v", reject: ReasonTagTooLong},
		{name: "tag unicode counted in chars", in: "m 1 k=" + rep("é", 200), metric: gauge("m", 1, now, "unknown", "k", rep("é", 200))},
		{name: "100 tags", in: "m 1" + nTags(100), metric: gauge("m", 1, now, "unknown", nTagList(100)...)},
		{name: "100 tags and source", in: "m 1 source=s" + nTags(100), metric: gauge("m", 1, now, "s", nTagList(100)...)},
		{name: "101 tags", in: "m 1" + nTags(101), reject: ReasonTooManyTags},
		{name: "1000 tags", in: "m 1" + nTags(1000), reject: ReasonTooManyTags},
		{name: "MaxTags option", opts: Options{MaxTags: 2}, in: "m 1 a=1 b=2 c=3", reject: ReasonTooManyTags},
		{name: "tag without eq", in: "m 1 k v", reject: ReasonInvalidTag},
		{name: "tag key only", in: "m 1 k", reject: ReasonInvalidTag},
		{name: "tag without value", in: "m 1 k=", reject: ReasonInvalidTag},
		{name: "stray eq", in: "m 1 =v", reject: ReasonUnexpectedToken},
		{name: "extra number", in: "m 1 " + strconv.Itoa(baseSec) + " 5", reject: ReasonUnexpectedToken},
		{name: "eq as value", in: "m 1 k==", metric: gauge("m", 1, now, "unknown", "k", "=")},

		// Line-level.
		{name: "invalid utf8", in: "m 1 k=\xff", reject: ReasonInvalidUTF8},
		{name: "line max", in: "m 1 k=" + rep("v", 100) + rep(" ", DefaultMaxLineLen-109) + "a=b", metric: gauge("m", 1, now, "unknown", "a", "b", "k", rep("v", 100))},
		{name: "line 32KiB+1", in: "m 1 k=v" + rep(" ", DefaultMaxLineLen-9) + "a=b", reject: ReasonLineTooLong},
		{name: "source tag command", in: "@SourceTag action=save source=x a b", reject: ReasonUnsupportedLine},
		{name: "event", in: "@Event 1 2 x", reject: ReasonTimestampOutOfRange},
		{name: "event without name", in: "@Event " + strconv.Itoa(baseSec), reject: ReasonInvalidEvent},
		{name: "event without time", in: "@Event deploy", reject: ReasonInvalidEvent},
		{name: "event bad tag", in: "@Event " + strconv.Itoa(baseSec) + " x host", reject: ReasonInvalidTag},
		{name: "event on dist port", opts: Options{Mode: ModeDistOnly}, in: "@Event " + strconv.Itoa(baseSec) + " x", reject: ReasonUnsupportedLine},
		{name: "json", in: `{"a":1}`, reject: ReasonMissingSpanID},
		{name: "json not span logs", in: `{"a":}`, reject: ReasonInvalidSpanLogs},
		{name: "json on histogram port", opts: Options{Mode: ModeSample}, in: `{"a":1}`, reject: ReasonUnsupportedLine},
		{name: "json array", in: `[{"a":1}]`, reject: ReasonUnsupportedLine},
		{name: "crlf", in: "m 1\r", metric: gauge("m", 1, now, "unknown")},

		// Modes for metric lines.
		{name: "histogram mode metric", opts: Options{Mode: ModeHistogram}, in: "m 1", metric: gauge("m", 1, now, "unknown")},
		{name: "dist port scalar", opts: Options{Mode: ModeDistOnly}, in: "m 1", reject: ReasonScalarOnDistributionPort},
		{name: "sample default window", opts: Options{Mode: ModeSample}, in: "m 1", metric: sample("m", 1, now, model.WindowMinute)},
		{name: "sample unknown window", opts: Options{Mode: ModeSample, Window: 9}, in: "!M #1 5 d", dist: dist("d", now, model.WindowMinute, "unknown", cents(5, 1))},
		{name: "sample hour", opts: Options{Mode: ModeSample, Window: model.WindowHour}, in: "m 1 k=v", metric: sample("m", 1, now, model.WindowHour, "k", "v")},

		// Distributions.
		{name: "dist minute", in: "!M " + strconv.Itoa(baseSec+30) + " #2 10 #4 20 d.n source=s k=v",
			dist: dist("d.n", base, model.WindowMinute, "s", cents(10, 2, 20, 4), "k", "v")},
		{name: "dist hour", in: "!H " + strconv.Itoa(baseSec+30) + " #1 5 d", dist: dist("d", now-3600e9, model.WindowHour, "unknown", cents(5, 1))},
		{name: "dist day", in: "!D " + strconv.Itoa(baseSec+30) + " #1 5 d", dist: dist("d", now-86400e9, model.WindowDay, "unknown", cents(5, 1))},
		{name: "dist no ts", in: "!M #1 5 d", dist: dist("d", now, model.WindowMinute, "unknown", cents(5, 1))},
		{name: "dist hash spaced", in: "!M # 1 5 d", dist: dist("d", now, model.WindowMinute, "unknown", cents(5, 1))},
		{name: "dist sorted", in: "!M #1 30 #2 10 #3 20 d", dist: dist("d", now, model.WindowMinute, "unknown", cents(10, 2, 20, 3, 30, 1))},
		{name: "dist fractional count", in: "!M #1.5 2 d", dist: dist("d", now, model.WindowMinute, "unknown", cents(2, 1.5))},
		{name: "dist quoted name and tags", in: `!M #1 2 "d.n" "k"="v w"`, dist: dist("d.n", now, model.WindowMinute, "unknown", cents(2, 1), "k", "v w")},
		{name: "dist host", in: "!M #1 2 d host=h", dist: dist("d", now, model.WindowMinute, "h", cents(2, 1))},
		{name: "dist zero count", in: "!M #0 5 d", reject: ReasonInvalidCentroid},
		{name: "dist negative count", in: "!M #-1 5 d", reject: ReasonInvalidCentroid},
		{name: "dist NaN mean", in: "!M #1 NaN d", reject: ReasonInvalidCentroid},
		{name: "dist bad count", in: "!M #x 5 d", reject: ReasonInvalidCentroid},
		{name: "dist truncated centroid", in: "!M #1", reject: ReasonInvalidCentroid},
		{name: "dist empty", in: "!M " + strconv.Itoa(baseSec) + " d", reject: ReasonEmptyHistogram},
		{name: "dist missing name", in: "!M #1 5", reject: ReasonMissingName},
		{name: "dist bad name", in: `!M #1 5 "d n"`, reject: ReasonInvalidName},
		{name: "dist bad tag", in: "!M #1 5 d k", reject: ReasonInvalidTag},
		{name: "dist old", in: "!M " + strconv.Itoa(nowSec-2*365*86400) + " #1 5 d", reject: ReasonTimestampOutOfRange},
		{name: "dist 10000 centroids", opts: Options{MaxLineLen: 1 << 20}, in: "!M" + nCentroids(10000) + " d", dist: func() *model.Distribution {
			cs := make([]model.Centroid, 10000)
			for i := range cs {
				cs[i] = model.Centroid{Value: float64(i), Count: 1}
			}
			return dist("d", now, model.WindowMinute, "unknown", cs)
		}()},
		{name: "dist 10001 centroids", opts: Options{MaxLineLen: 1 << 20}, in: "!M" + nCentroids(10001) + " d", reject: ReasonTooManyCentroids},
		{name: "dist lowercase prefix is a metric", in: "!m #1 5 d", reject: ReasonInvalidValue},
		{name: "dist only port", opts: Options{Mode: ModeDistOnly}, in: "!D #1 5 d", dist: dist("d", now, model.WindowDay, "unknown", cents(5, 1))},
		{name: "histogram mode dist", opts: Options{Mode: ModeHistogram}, in: "!H #1 5 d", dist: dist("d", now, model.WindowHour, "unknown", cents(5, 1))},
		{name: "sample port coarser", opts: Options{Mode: ModeSample}, in: "!H #1 5 d", reject: ReasonCoarserDistribution},
		{name: "sample port rebin", opts: Options{Mode: ModeSample, Window: model.WindowHour}, in: "!M " + strconv.Itoa(baseSec+30) + " #1 5 d",
			dist: dist("d", now-3600e9, model.WindowHour, "unknown", cents(5, 1))},

		// Spans.
		{name: "span reference", opts: trace, in: "getAllUsers source=localhost traceId=7b3bf470-9456-11e8-9eb6-529269fb1459 spanId=0313bafe-9457-11e8-9eb6-529269fb1459 parent=2f64e538-9457-11e8-9eb6-529269fb1459 application=Wavefront http.method=GET " + strconv.Itoa(baseSec) + " " + strconv.Itoa(baseSec+1),
			span: span("getAllUsers", "7b3bf470-9456-11e8-9eb6-529269fb1459", "0313bafe-9457-11e8-9eb6-529269fb1459", "2f64e538-9457-11e8-9eb6-529269fb1459", base, 1e9, "localhost", "application", "Wavefront", "http.method", "GET")},
		{name: "span seconds duration", opts: trace, in: "op spanId=s1 traceId=t1 " + strconv.Itoa(baseSec) + " 3", span: sp(base, 3e9)},
		{name: "span millis duration", opts: trace, in: "op spanId=s1 traceId=t1 " + strconv.Itoa(baseSec) + "123 343", span: sp(base+123e6, 343e6)},
		{name: "span millis end", opts: trace, in: "op spanId=s1 traceId=t1 " + strconv.Itoa(baseSec) + "123 " + strconv.Itoa(baseSec) + "500", span: sp(base+123e6, 377e6)},
		{name: "span micros", opts: trace, in: "op spanId=s1 traceId=t1 " + strconv.Itoa(baseSec) + "000001 250", span: sp(base+1e3, 250e3)},
		{name: "span nanos", opts: trace, in: "op spanId=s1 traceId=t1 " + strconv.Itoa(baseSec) + "000000001 250", span: sp(base+1, 250)},
		{name: "span fractional seconds", opts: trace, in: "op spanId=s1 traceId=t1 " + strconv.Itoa(baseSec) + ".5 0.25", span: sp(base+5e8, 25e7)},
		{name: "span quoted", opts: trace, in: `"op" "spanId"="s1" traceId = "t1" "k"="a b" ` + strconv.Itoa(baseSec) + " 1", span: span("op", "t1", "s1", "", base, 1e9, "unknown", "k", "a b")},
		{name: "span repeated parent", opts: trace, in: "op spanId=s1 traceId=t1 parent=p1 parent=p2 followsFrom=f " + strconv.Itoa(baseSec) + " 1",
			span: span("op", "t1", "s1", "p1", base, 1e9, "unknown", "followsFrom", "f", "parent", "p2")},
		{name: "span empty parent ignored", opts: trace, in: `op spanId=s1 traceId=t1 parent="" parent=p2 ` + strconv.Itoa(baseSec) + " 1",
			span: span("op", "t1", "s1", "p2", base, 1e9, "unknown")},
		{name: "span duplicate keys kept", opts: trace, in: "op spanId=s1 traceId=t1 k=2 k=1 " + strconv.Itoa(baseSec) + " 1",
			span: span("op", "t1", "s1", "", base, 1e9, "unknown", "k", "1", "k", "2")},
		{name: "span host", opts: trace, in: "op spanId=s1 traceId=t1 host=h " + strconv.Itoa(baseSec) + " 1", span: span("op", "t1", "s1", "", base, 1e9, "h")},
		{name: "span missing spanId", opts: trace, in: "op traceId=t1 " + strconv.Itoa(baseSec) + " 1", reject: ReasonMissingSpanID},
		{name: "span missing traceId", opts: trace, in: "op spanId=s1 " + strconv.Itoa(baseSec) + " 1", reject: ReasonMissingTraceID},
		{name: "span missing duration", opts: trace, in: "op spanId=s1 traceId=t1 " + strconv.Itoa(baseSec), reject: ReasonMissingTimestamp},
		{name: "span extra token", opts: trace, in: "op spanId=s1 traceId=t1 " + strconv.Itoa(baseSec) + " 1 2", reject: ReasonUnexpectedToken},
		{name: "span bad end", opts: trace, in: "op spanId=s1 traceId=t1 " + strconv.Itoa(baseSec) + " x", reject: ReasonInvalidTimestamp},
		{name: "span star name", opts: trace, in: "op* spanId=s1 traceId=t1 " + strconv.Itoa(baseSec) + " 1", reject: ReasonInvalidName},
		{name: "span name 129", opts: trace, in: rep("o", 129) + " spanId=s1 traceId=t1 " + strconv.Itoa(baseSec) + " 1", reject: ReasonNameTooLong},
		{name: "span bad key", opts: trace, in: "op spanId=s1 traceId=t1 k$=v " + strconv.Itoa(baseSec) + " 1", reject: ReasonInvalidTagKey},
		{name: "span key 129", opts: trace, in: "op spanId=s1 traceId=t1 " + rep("k", 129) + "=v " + strconv.Itoa(baseSec) + " 1", reject: ReasonTagTooLong},
		{name: "span empty value", opts: trace, in: `op spanId=s1 traceId=t1 k="" ` + strconv.Itoa(baseSec) + " 1", reject: ReasonEmptyTagValue},
		{name: "span too many tags", opts: Options{Mode: ModeTrace, MaxTags: 1}, in: "op spanId=s1 traceId=t1 a=1 b=2 " + strconv.Itoa(baseSec) + " 1", reject: ReasonTooManyTags},
		{name: "span old", opts: trace, in: "op spanId=s1 traceId=t1 " + strconv.Itoa(nowSec-2*365*86400) + " 1", reject: ReasonTimestampOutOfRange},
		{name: "span logs json", opts: trace, in: `{"traceId":"t","spanId":"s","logs":[]}`, reject: ReasonInvalidSpanLogs},
		{name: "span logs no trace", opts: trace, in: `{"spanId":"s","logs":[{"timestamp":1,"fields":{}}]}`, reject: ReasonMissingTraceID},
	}
}

var cmpOpts = []cmp.Option{cmpopts.EquateEmpty()}

func TestGolden(t *testing.T) {
	cases := goldenCases()
	if len(cases) < 80 {
		t.Fatalf("only %d golden cases", len(cases))
	}
	seen := map[string]bool{}
	for _, tc := range cases {
		if seen[tc.name] {
			t.Fatalf("duplicate case name %q", tc.name)
		}
		seen[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			d := NewDecoder(tc.opts)
			var b model.Batch
			d.Decode(&b, []byte(tc.in), now)
			var want model.Batch
			switch {
			case tc.metric != nil:
				want.Metrics = []model.Metric{*tc.metric}
			case tc.dist != nil:
				want.Dists = []model.Distribution{*tc.dist}
			case tc.span != nil:
				want.Spans = []model.Span{*tc.span}
			default:
				want.Rejects = []model.Reject{{Reason: tc.reject, Line: []byte(strings.TrimSpace(tc.in))}}
			}
			opts := append(cmpOpts, cmpopts.IgnoreFields(model.Batch{}, "Arena", "CentroidArena"))
			if diff := cmp.Diff(want, b, opts...); diff != "" {
				t.Errorf("Decode(%.200q) mismatch (-want +got):\n%s", tc.in, diff)
			}
			if tc.reject != "" && (len(b.Arena) != 0 || len(b.CentroidArena) != 0) {
				t.Errorf("rejected line left %d tags, %d centroids in the arenas", len(b.Arena), len(b.CentroidArena))
			}
		})
	}
}

func TestMultiLine(t *testing.T) {
	in := "a 1 k=v\r\n\r\n   \n  b 2 \r\nbad$ 3\nc 3 " + strconv.Itoa(baseSec) + "\r\n!M #1 5 d\n\n"
	d := NewDecoder(Options{})
	var b model.Batch
	d.Decode(&b, []byte(in), now)
	want := model.Batch{
		Metrics: []model.Metric{*gauge("a", 1, now, "unknown", "k", "v"), *gauge("b", 2, now, "unknown"), *gauge("c", 3, base, "unknown")},
		Dists:   []model.Distribution{*dist("d", now, model.WindowMinute, "unknown", cents(5, 1))},
		Rejects: []model.Reject{{Reason: ReasonInvalidName, Line: []byte("bad$ 3")}},
	}
	opts := append(cmpOpts, cmpopts.IgnoreFields(model.Batch{}, "Arena", "CentroidArena"))
	if diff := cmp.Diff(want, b, opts...); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
}

// TestBadLineInMiddle checks that a rejected line with tags does not disturb
// the tags of its neighbours in the shared arena.
func TestBadLineInMiddle(t *testing.T) {
	in := "a 1 x=1 y=2\nb 2 p=1 q=2 r=\"\"\nc 3 z=3\n"
	d := NewDecoder(Options{})
	var b model.Batch
	d.Decode(&b, []byte(in), now)
	want := model.Batch{
		Metrics: []model.Metric{*gauge("a", 1, now, "unknown", "x", "1", "y", "2"), *gauge("c", 3, now, "unknown", "z", "3")},
		Rejects: []model.Reject{{Reason: ReasonEmptyTagValue, Line: []byte(`b 2 p=1 q=2 r=""`)}},
	}
	opts := append(cmpOpts, cmpopts.IgnoreFields(model.Batch{}, "Arena", "CentroidArena"))
	if diff := cmp.Diff(want, b, opts...); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
	if len(b.Arena) != 3 {
		t.Errorf("arena holds %d tags, want 3", len(b.Arena))
	}
}

// TestAliasing documents that decoded strings alias the payload.
func TestAliasing(t *testing.T) {
	p := []byte("name 1 k=v")
	d := NewDecoder(Options{})
	var b model.Batch
	d.Decode(&b, p, now)
	p[0] = 'N'
	if b.Metrics[0].Name != "Name" {
		t.Fatalf("name %q does not alias the payload", b.Metrics[0].Name)
	}
}
