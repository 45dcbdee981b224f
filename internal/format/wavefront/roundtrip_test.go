package wavefront

import (
	"bytes"
	"math"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/les-streams/les/internal/model"
)

func TestRoundTripMetric(t *testing.T) {
	ms := []*model.Metric{
		gauge("aws.lambda.duration", 123.25, base, "fn-1", "region", "us-east-1", "env", "prod east"),
		gauge("m", -0.000125, base+60e9, "s", "q", `say "hi"`, "b", `back\slash`, "eq", "a=b"),
		gauge("m", 9.22337186120781e+18, base, "unknown"),
		gauge("m", 1e-300, base, `so"urce`),
		counter("∆req.count", 3, base, "web", "_host", "h", "_tag", "t"),
		gauge("~proxy.x", 0, base, "s", "k", "it's"),
	}
	d := NewDecoder(Options{})
	for _, m := range ms {
		line := AppendMetric(nil, m)
		var b model.Batch
		d.Decode(&b, line, now)
		if len(b.Metrics) != 1 {
			t.Errorf("%s: decoded %+v", line, b.Rejects)
			continue
		}
		if diff := cmp.Diff(*m, b.Metrics[0], cmpOpts...); diff != "" {
			t.Errorf("%s: mismatch (-want +got):\n%s", line, diff)
		}
	}
	sm := sample("lat", 12.5, base, model.WindowHour, "k", "v")
	var b model.Batch
	NewDecoder(Options{Mode: ModeSample, Window: model.WindowHour}).Decode(&b, AppendMetric(nil, sm), now)
	if len(b.Metrics) != 1 || cmp.Diff(*sm, b.Metrics[0], cmpOpts...) != "" {
		t.Errorf("sample round trip: %+v %+v", b.Metrics, b.Rejects)
	}
}

func TestAppendMetricFormat(t *testing.T) {
	m := gauge("cpu.load", 0.42, base+999e6, "web01", "env", "prod east")
	got := string(AppendMetric(nil, m))
	want := `"cpu.load" 0.42 1767225000 source="web01" "env"="prod east"` + "\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestRoundTripDistribution(t *testing.T) {
	ds := []*model.Distribution{
		dist("aws.lambda.duration", base, model.WindowMinute, "fn", cents(1.5, 2, 10, 4, 20, 1), "region", "us-east-1"),
		dist("d", now-3600e9, model.WindowHour, "unknown", cents(-3, 7)),
		dist("d", now-86400e9, model.WindowDay, "s", cents(0.001, 1, 1e9, 100000), "k", "v w"),
	}
	d := NewDecoder(Options{})
	for _, want := range ds {
		line := AppendDistribution(nil, want)
		var b model.Batch
		d.Decode(&b, line, now)
		if len(b.Dists) != 1 {
			t.Errorf("%s: decoded %+v", line, b.Rejects)
			continue
		}
		if diff := cmp.Diff(*want, b.Dists[0], cmpOpts...); diff != "" {
			t.Errorf("%s: mismatch (-want +got):\n%s", line, diff)
		}
	}
}

func TestAppendDistributionFormat(t *testing.T) {
	d := &model.Distribution{Name: "TestMetric", Timestamp: 1469751813e9, Window: model.WindowMinute, Source: "TestSource",
		Tags:      tags("keyA", "valueA"),
		Centroids: cents(10, 1, 10, 1, 20, 3.6, 25, 0.4, 30, 0.2)}
	got := string(AppendDistribution(nil, d))
	want := `!M 1469751813 #2 10 #4 20 "TestMetric" source="TestSource" "keyA"="valueA"` + "\n"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestRoundTripSpan(t *testing.T) {
	ss := []*model.Span{
		span("getAllUsers", "7b3bf470-9456-11e8", "0313bafe-9457", "2f64e538", base+123e6, 343e6, "localhost", "application", "Wavefront", "http.method", "GET"),
		span("op name", "t", "s", "", base, 0, "unknown", "_host", "h"),
		span("op", "t", "s", "p1", base, 5e6, "unknown", "parent", "p2"),
	}
	d := NewDecoder(Options{Mode: ModeTrace})
	for _, want := range ss {
		line := AppendSpan(nil, want)
		var b model.Batch
		d.Decode(&b, line, now)
		if len(b.Spans) != 1 {
			t.Errorf("%s: decoded %+v", line, b.Rejects)
			continue
		}
		if diff := cmp.Diff(*want, b.Spans[0], cmpOpts...); diff != "" {
			t.Errorf("%s: mismatch (-want +got):\n%s", line, diff)
		}
	}
}

// Independent restatement of the validation rules, for the fuzz targets.
var (
	nameRE   = regexp.MustCompile(`^(~|[∆Δ]~?)?[A-Za-z0-9._,/-]*$`)
	blankRE  = regexp.MustCompile(`^[\t\n\v\f\r\x1c-\x1f ]*$`)
	nchars   = utf8.RuneCountInString
	allModes = []Mode{ModeMetrics, ModeHistogram, ModeDistOnly, ModeSample, ModeTrace}
)

func checkTags(t *testing.T, ts model.Tags, o Options, unique bool) {
	t.Helper()
	if len(ts) > o.MaxTags {
		t.Fatalf("%d tags > MaxTags %d", len(ts), o.MaxTags)
	}
	for i, tg := range ts {
		if i > 0 && (ts[i-1].Key > tg.Key || (ts[i-1].Key == tg.Key && (unique || ts[i-1].Value > tg.Value))) {
			t.Fatalf("tags not sorted/unique: %q", ts)
		}
		if tg.Key == "" || !nameRE.MatchString(tg.Key) {
			t.Fatalf("bad tag key %q", tg.Key)
		}
		if blankRE.MatchString(tg.Value) {
			t.Fatalf("blank tag value for %q", tg.Key)
		}
		if unique && (nchars(tg.Key)+nchars(tg.Value) >= 255 || tg.Key == "source" || tg.Key == "host" || tg.Key == "tag") {
			t.Fatalf("bad tag %q=%q", tg.Key, tg.Value)
		}
	}
}

func checkSrc(t *testing.T, s string) {
	t.Helper()
	if blankRE.MatchString(s) || nchars(s) > 1023 {
		t.Fatalf("bad source %q", s)
	}
}

func checkTS(t *testing.T, ts int64) {
	t.Helper()
	if ts <= now-int64(DefaultBackfillCutoff) || ts >= now+int64(DefaultPrefillCutoff) {
		t.Fatalf("timestamp %d out of range", ts)
	}
}

func checkNameOK(t *testing.T, n string) {
	t.Helper()
	if n == "" || !nameRE.MatchString(n) || nchars(n) > 1023 {
		t.Fatalf("bad name %q", n)
	}
}

func validate(t *testing.T, b *model.Batch, o Options) {
	t.Helper()
	o = NewDecoder(o).o
	for _, m := range b.Metrics {
		checkNameOK(t, m.Name)
		checkSrc(t, m.Source)
		checkTS(t, m.Timestamp)
		checkTags(t, m.Tags, o, true)
		if !model.IsFinite(m.Value) {
			t.Fatalf("non-finite value %v", m.Value)
		}
		switch {
		case o.Mode == ModeSample:
			if m.Kind != model.Sample || m.Window != o.Window {
				t.Fatalf("sample mode gave kind %v window %v", m.Kind, m.Window)
			}
		case o.Mode == ModeDistOnly || o.Mode == ModeTrace:
			t.Fatalf("metric in mode %d", o.Mode)
		case isDelta(m.Name):
			if m.Kind != model.Counter || m.Value <= 0 {
				t.Fatalf("bad delta %+v", m)
			}
		case m.Kind != model.Gauge:
			t.Fatalf("kind %v", m.Kind)
		}
	}
	for _, d := range b.Dists {
		checkNameOK(t, d.Name)
		checkSrc(t, d.Source)
		checkTS(t, d.Timestamp)
		checkTags(t, d.Tags, o, true)
		if o.Mode == ModeTrace || d.Window == model.WindowNone || d.Timestamp%d.Window.Nanos() != 0 {
			t.Fatalf("bad window %v ts %d", d.Window, d.Timestamp)
		}
		if o.Mode == ModeSample && d.Window != o.Window {
			t.Fatalf("window %v on %v sample port", d.Window, o.Window)
		}
		if len(d.Centroids) == 0 || len(d.Centroids) > MaxCentroids {
			t.Fatalf("%d centroids", len(d.Centroids))
		}
		var n float64
		for i, c := range d.Centroids {
			if !(c.Count > 0) || math.IsInf(c.Count, 0) || !model.IsFinite(c.Value) || (i > 0 && d.Centroids[i-1].Value > c.Value) {
				t.Fatalf("bad centroids %v", d.Centroids)
			}
			n += c.Count
		}
		if n != d.Count || d.Min != d.Centroids[0].Value || d.Max != d.Centroids[len(d.Centroids)-1].Value {
			t.Fatalf("bad summary %+v", d)
		}
	}
	for _, s := range b.Spans {
		if o.Mode != ModeTrace {
			t.Fatalf("span in mode %d", o.Mode)
		}
		if s.Name == "" || strings.Contains(s.Name, "*") || nchars(s.Name) > MaxSpanNameLen || s.SpanID == "" || s.TraceID == "" {
			t.Fatalf("bad span %+v", s)
		}
		checkSrc(t, s.Source)
		checkTS(t, s.Start)
		checkTags(t, s.Tags, o, false)
	}
}

func fuzzSeeds(f *testing.F) {
	for _, tc := range goldenCases() {
		if len(tc.in) < 2000 {
			f.Add(tc.in, uint8(tc.opts.Mode))
		}
	}
	f.Add(string(realisticPayload(20)), uint8(ModeMetrics))
	f.Add(sdkEventLine+sdkSpanLogs, uint8(ModeMetrics))
	f.Add(sdkSpanLogs, uint8(ModeTrace))
}

func FuzzDecode(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, in string, mode uint8) {
		o := Options{Mode: allModes[int(mode)%len(allModes)], Window: model.Window(mode / 8 % 6)}
		var b model.Batch
		NewDecoder(o).Decode(&b, []byte(in), now)
		validate(t, &b, o)
		lines := 0
		for l := range strings.SplitSeq(in, "\n") {
			if !blankRE.MatchString(l) {
				lines++
			}
		}
		// A span-logs line gives one log per entry; every other line one
		// item or one reject.
		if got := b.Len() + len(b.Rejects); got != lines && (len(b.Logs) == 0 || got < lines) {
			t.Fatalf("%d lines gave %d items and rejects", lines, got)
		}
		for _, l := range b.Logs {
			if o.Mode == ModeDistOnly || o.Mode == ModeSample {
				t.Fatalf("log in mode %d", o.Mode)
			}
			checkSrc(t, l.Source)
		}
	})
}

// encodable reports whether every string of an item survives the quoted
// form: none may end in a backslash.
func encodable(ss ...string) bool {
	for _, s := range ss {
		if strings.HasSuffix(s, `\`) {
			return false
		}
	}
	return true
}

func tagStrings(ts model.Tags) []string {
	var ss []string
	for _, t := range ts {
		ss = append(ss, t.Key, t.Value)
	}
	return ss
}

// FuzzRoundTrip decodes arbitrary input, encodes every accepted item, decodes
// that again and expects the same item (timestamps cut to the wire's unit).
func FuzzRoundTrip(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, in string, mode uint8) {
		o := Options{Mode: allModes[int(mode)%len(allModes)], Window: model.Window(mode / 8 % 6)}
		d := NewDecoder(o)
		var b model.Batch
		d.Decode(&b, []byte(in), now)
		for _, m := range b.Metrics {
			if !encodable(append(tagStrings(m.Tags), m.Source)...) {
				continue
			}
			want := m
			want.Timestamp -= want.Timestamp % 1e9
			line := AppendMetric(nil, &m)
			var b2 model.Batch
			d.Decode(&b2, line, now)
			if want.Timestamp <= now-int64(DefaultBackfillCutoff) {
				continue
			}
			if len(b2.Metrics) != 1 {
				t.Fatalf("%q: re-decode rejected %+v", line, b2.Rejects)
			}
			if diff := cmp.Diff(want, b2.Metrics[0], cmpOpts...); diff != "" {
				t.Fatalf("%q: mismatch (-want +got):\n%s", line, diff)
			}
		}
		for _, x := range b.Dists {
			if !encodable(append(tagStrings(x.Tags), x.Source)...) {
				continue
			}
			line := AppendDistribution(nil, &x)
			var b2 model.Batch
			d.Decode(&b2, line, now)
			if len(b2.Dists) != 1 {
				// Every centroid may round to a zero count.
				if len(b2.Rejects) == 1 && b2.Rejects[0].Reason == ReasonEmptyHistogram {
					continue
				}
				t.Fatalf("%q: re-decode rejected %+v", line, b2.Rejects)
			}
			if again := AppendDistribution(nil, &b2.Dists[0]); !bytes.Equal(line, again) {
				t.Fatalf("encoding not stable:\n%q\n%q", line, again)
			}
			exact := true
			for i, c := range x.Centroids {
				if c.Count != math.Round(c.Count) || (i > 0 && x.Centroids[i-1].Value == c.Value) {
					exact = false
				}
			}
			if exact {
				if diff := cmp.Diff(x, b2.Dists[0], cmpOpts...); diff != "" {
					t.Fatalf("%q: mismatch (-want +got):\n%s", line, diff)
				}
			}
		}
		for _, s := range b.Spans {
			if !encodable(append(tagStrings(s.Tags), s.Source, s.Name, s.SpanID, s.TraceID, s.ParentID)...) {
				continue
			}
			want := s
			want.Start -= want.Start % 1e6
			want.Duration -= want.Duration % 1e6
			if want.Duration < 0 || want.Start/1e6 <= 999999999999 || want.Duration >= want.Start {
				continue
			}
			line := AppendSpan(nil, &s)
			var b2 model.Batch
			d.Decode(&b2, line, now)
			if len(b2.Spans) != 1 {
				t.Fatalf("%q: re-decode rejected %+v", line, b2.Rejects)
			}
			if diff := cmp.Diff(want, b2.Spans[0], cmpOpts...); diff != "" {
				t.Fatalf("%q: mismatch (-want +got):\n%s", line, diff)
			}
		}
	})
}
