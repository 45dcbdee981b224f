package statsd

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/les-streams/les/internal/model"
)

// refDecode is a reference decoder written straight from the grammar in
// README.md: slow and simple (strings.Split, strings.Cut, strconv, sort),
// sharing no code with Decoder. TestDifferential holds Decoder to it.
func refDecode(o Options, payload string) result {
	maxLen, maxTags := o.MaxLineLen, o.MaxTags
	if maxLen <= 0 {
		maxLen = 8192
	}
	if maxTags <= 0 {
		maxTags = 100
	}
	srcTags := o.SourceTags
	if srcTags == nil {
		srcTags = []string{"source", "host"}
	}
	var r result
	for _, line := range strings.Split(payload, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			continue
		}
		reason := refLine(&r, o.Flavor, maxLen, maxTags, o.DefaultSource, srcTags, line)
		if reason != "" {
			r.Rejects = append(r.Rejects, reason+": "+line)
		}
	}
	return r
}

// refTags collects one line's tags, diverting source tags.
type refTags struct {
	srcTags []string
	maxTags int
	n       int // tags counted against maxTags
	tags    model.Tags
	source  string
	prio    int
}

// add reads the comma-separated list s with sep between key and value; it
// returns a rejection reason or "".
func (t *refTags) add(s, sep string) string {
	for _, tag := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(tag, sep)
		if k == "" {
			continue
		}
		if p := slices.Index(t.srcTags, k); p >= 0 {
			if p < t.prio && v != "" {
				t.source, t.prio = v, p
			}
			continue
		}
		t.n++
		if t.n > t.maxTags {
			return ReasonTooManyTags
		}
		t.tags = append(t.tags, model.Tag{Key: k, Value: v})
	}
	return ""
}

// sorted returns the tags sorted by key then value, keeping the first of
// each key.
func (t *refTags) sorted() model.Tags {
	s := slices.Clone(t.tags)
	slices.SortFunc(s, func(a, b model.Tag) int {
		if c := strings.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		return strings.Compare(a.Value, b.Value)
	})
	return slices.CompactFunc(s, func(a, b model.Tag) bool { return a.Key == b.Key })
}

func refSeconds(s string) (int64, bool) {
	if s == "" || len(s) > 12 || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	n, _ := strconv.ParseInt(s, 10, 64)
	return n * 1e9, true
}

func refLine(r *result, flavor Flavor, maxLen, maxTags int, defSource string, srcTags []string, line string) string {
	if len(line) > maxLen {
		return ReasonLineTooLong
	}
	if !utf8.ValidString(line) {
		return ReasonInvalidUTF8
	}
	tags := refTags{srcTags: srcTags, maxTags: maxTags, source: defSource, prio: len(srcTags)}
	if strings.HasPrefix(line, "_e{") {
		return refEvent(r, &tags, line)
	}
	if strings.HasPrefix(line, "_sc|") {
		return refServiceCheck(r, &tags, line)
	}
	colon, bar := strings.Index(line, ":"), strings.Index(line, "|")
	if colon < 0 || bar < colon {
		return ReasonInvalidLine
	}
	head, values, _ := strings.Cut(line[:bar], ":")
	name, telegraf, hasTelegraf := strings.Cut(head, ",")
	if name == "" {
		return ReasonEmptyName
	}
	fields := strings.Split(line[bar+1:], "|")
	kinds := map[string]model.Kind{"c": model.Counter, "g": model.Gauge, "ms": model.Sample, "h": model.Sample, "d": model.Sample, "s": model.Set}
	kind, ok := kinds[fields[0]]
	if !ok {
		return ReasonUnknownType
	}
	if hasTelegraf {
		if reason := tags.add(telegraf, "="); reason != "" {
			return reason
		}
	}
	rate, ts := 1.0, now
	for _, f := range fields[1:] {
		switch {
		case f == "":
		case f[0] == '@':
			v, err := strconv.ParseFloat(f[1:], 64)
			if err != nil || !(v > 0 && v <= 1) { // NaN too
				return ReasonInvalidSampleRate
			}
			rate = v
		case f[0] == '#':
			if reason := tags.add(f[1:], ":"); reason != "" {
				return reason
			}
		case f[0] == 'T':
			t, ok := refSeconds(f[1:])
			if !ok {
				return ReasonInvalidTimestamp
			}
			ts = t
		}
	}
	base := model.Metric{Name: name, Timestamp: ts, Source: tags.source, Tags: tags.sorted(), Kind: kind}
	if kind == model.Set {
		if values == "" {
			return ReasonInvalidValue
		}
		base.Value = SetValue([]byte(values))
		r.Metrics = append(r.Metrics, base)
		return ""
	}
	var out []model.Metric
	for _, v := range strings.Split(values, ":") {
		if v == "" {
			return ReasonInvalidValue
		}
		f, err := strconv.ParseFloat(v, 64)
		if errors.Is(err, strconv.ErrRange) || math.IsInf(f, 0) || math.IsNaN(f) {
			return ReasonNonFiniteValue
		}
		if err != nil {
			return ReasonInvalidValue
		}
		m := base
		m.Value = f
		copies := 1
		switch {
		case kind == model.Gauge && flavor == FlavorEtsy && (v[0] == '+' || v[0] == '-'):
			m.Kind = model.GaugeDelta
		case kind == model.Counter:
			m.Value = f / rate
			if math.IsInf(m.Value, 0) {
				return ReasonNonFiniteValue
			}
		case kind == model.Sample:
			copies = max(1, int(min(math.Round(1/rate), MaxSampleCopies)))
		}
		for range copies {
			out = append(out, m)
		}
	}
	r.Metrics = append(r.Metrics, out...)
	return ""
}

func refEvent(r *result, tags *refTags, line string) string {
	// "{<title_len>,<text_len>}:": the first ',' and the first '}' after it.
	rest := line[3:]
	comma, brace := strings.Index(rest, ","), strings.Index(rest, "}")
	if comma < 0 || brace < comma || !strings.HasPrefix(rest[brace:], "}:") {
		return ReasonInvalidEvent
	}
	head := rest[:brace]
	rest = rest[brace+2:]
	num := func(s string) (int, bool) {
		if s == "" || len(s) > 6 || strings.Trim(s, "0123456789") != "" {
			return 0, false
		}
		n, _ := strconv.Atoi(s)
		return n, true
	}
	tl, ok1 := num(head[:comma])
	xl, ok2 := num(head[comma+1:])
	if !ok1 || !ok2 || tl == 0 || tl+1+xl > len(rest) || rest[tl] != '|' {
		return ReasonInvalidEvent
	}
	unesc := func(s string) string { return strings.ReplaceAll(s, `\n`, "\n") }
	l := model.Log{Timestamp: now, Source: tags.source, Level: LevelInfo, Message: []byte(unesc(rest[tl+1 : tl+1+xl]))}
	attrs := model.Tags{{Key: "title", Value: unesc(rest[:tl])}}
	rest = rest[tl+1+xl:]
	if rest != "" && rest[0] != '|' {
		return ReasonInvalidEvent
	}
	for _, f := range strings.Split(strings.TrimPrefix(rest, "|"), "|") {
		if strings.HasPrefix(f, "#") {
			if reason := tags.add(f[1:], ":"); reason != "" {
				return reason
			}
			continue
		}
		if len(f) < 2 || f[1] != ':' {
			continue
		}
		v := f[2:]
		switch f[0] {
		case 'd':
			t, ok := refSeconds(v)
			if !ok {
				return ReasonInvalidEvent
			}
			l.Timestamp = t
		case 'h':
			if v != "" {
				tags.source, tags.prio = v, -1
			}
		case 'p':
			attrs = append(attrs, model.Tag{Key: "priority", Value: v})
		case 't':
			l.Level = map[string]string{"error": LevelError, "ERROR": LevelError, "Error": LevelError,
				"warning": LevelWarning, "WARNING": LevelWarning, "Warning": LevelWarning,
				"success": LevelSuccess, "SUCCESS": LevelSuccess, "Success": LevelSuccess}[v]
			if l.Level == "" {
				l.Level = LevelInfo
			}
		case 'k':
			attrs = append(attrs, model.Tag{Key: "aggregation_key", Value: v})
		case 's':
			attrs = append(attrs, model.Tag{Key: "source_type_name", Value: v})
		}
	}
	tags.tags = append(attrs, tags.tags...)
	l.Source, l.Attrs = tags.source, tags.sorted()
	r.Logs = append(r.Logs, l)
	return ""
}

func refServiceCheck(r *result, tags *refTags, line string) string {
	name, rest, ok := strings.Cut(line[4:], "|")
	if !ok || name == "" {
		return ReasonInvalidEvent
	}
	status, rest, _ := strings.Cut(rest, "|")
	levels := map[string]string{"0": LevelOK, "1": LevelWarning, "2": LevelCritical, "3": LevelUnknown}
	if levels[status] == "" {
		return ReasonInvalidEvent
	}
	l := model.Log{Timestamp: now, Level: levels[status]}
	attrs := model.Tags{{Key: "check", Value: name}}
	for rest != "" {
		if msg, ok := strings.CutPrefix(rest, "m:"); ok {
			l.Message = []byte(msg)
			break
		}
		var f string
		f, rest, _ = strings.Cut(rest, "|")
		switch {
		case strings.HasPrefix(f, "#"):
			if reason := tags.add(f[1:], ":"); reason != "" {
				return reason
			}
		case strings.HasPrefix(f, "d:"):
			t, ok := refSeconds(f[2:])
			if !ok {
				return ReasonInvalidEvent
			}
			l.Timestamp = t
		case strings.HasPrefix(f, "h:") && len(f) > 2:
			tags.source, tags.prio = f[2:], -1
		}
	}
	tags.tags = append(attrs, tags.tags...)
	l.Source, l.Attrs = tags.source, tags.sorted()
	r.Logs = append(r.Logs, l)
	return ""
}

// longSource is a source tag key longer than 63 bytes.
const longSource = "a.source.tag.key.longer.than.sixty.three.bytes.which.no.client.writes.x"

// diffResults is cmp.Diff(want, got) with floats compared bit for bit,
// ignoring Metric.Ref (a hint that the series cache sets).
func diffResults(want, got result) string {
	bitEqual := cmp.Comparer(func(a, b float64) bool { return math.Float64bits(a) == math.Float64bits(b) })
	return cmp.Diff(want, got, cmpopts.EquateEmpty(), bitEqual, cmpopts.IgnoreFields(model.Metric{}, "Ref"))
}

// corpusLine returns one random line: mostly plausible metric lines with
// every kind of damage the grammar can reject, plus events and service
// checks.
func corpusLine(rng *rand.Rand) string {
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	switch rng.IntN(20) {
	case 0:
		return "_e{" + pick("5", "4", "0", "x", "", "1234567") + pick(",", "") + pick("4", "3", "40", "") +
			pick("}:", "}", ":", "}:") + pick("title", `ti\nt`, "tïtl") + pick("|", "") + pick("text", `a\nb|c`, "", "texttext") +
			pick("", "|d:1700000000", "|d:x", "|h:web", "|h:", "|p:low|t:error", "|t:Warning", "|k:agg|s:src", "x", "|#env:prod,host:h1,source:s", "|#a:1,b,c:2,d:3,e:4,f:5,g:6,h:7,i:8")
	case 1:
		return "_sc|" + pick("db.up", "", "x") + pick("|", "") + pick("0", "1", "2", "3", "4", "", "01") +
			pick("", "|h:db1", "|h:", "|d:1700000000", "|d:", "|#env:prod,host:h", "|m:down|hard", "|x|m:", "|#source:a|h:b", "|#a,b,c,d,e,f,g,h,i")
	case 2:
		return pick("", "junk", "a|b:1", "abc:1", ":1|c", ",k=v:1|c", "a\xff:1|c", "a:1|c|#k:\xc3", "temp\u00e9:1|g", "_x:1|c", "_e:1|c", "_sc:1|g")
	case 3:
		return strings.Repeat("x", 150+rng.IntN(100)) + ":1|c"
	}
	var b strings.Builder
	b.WriteString(pick("app.req", "aws.lambda.duration", "a", "n.a-b_c", "app.req", "aws.lambda.duration", "a", "n.a-b_c", "", "mé.trïc", "x\x80y"))
	if rng.IntN(6) == 0 {
		b.WriteString(pick(",env=prod", ",host=h1,k=v", ",,", ",flag", ",=v", ",k=v=w,source=s", ",a=1,b=2,c=3,d=4,e=5,f=6,g=7,h=8,i=9"))
	}
	b.WriteString(pick(":", ":", ":", ":", ":", ":", ":", "", "|"))
	values := []string{
		"1", "0", "-0", "+0", "42", "-3", "+3", "2.5", "-0.25", "0.1", "123.456", "00012", "1.", ".5", "-.5", "+.5", "1e3", "1E-3",
		"0x1p3", "1_000", "Inf", "-inf", "NaN", "1e400", "-1e400", "1e-400", "", "abc", "1.2.3", "--1", "+", "-", ".", "1e", "é",
		"999999999999999", "9999999999999999", "12345678901234567890", "0.000000000000001", "1234567.12345678", "9007199254740993",
		"1.7976931348623157e308", "123456789012345.5", "0.30000000000000004", "4.9e-324", "1e308", "-1e308",
		"1,5", "a,b", ",", "1=2",
	}
	b.WriteString(pick(values...))
	for rng.IntN(4) == 0 {
		b.WriteString(":" + pick(values...))
	}
	b.WriteString(pick("|", "|", "|", "|", "|", "|", "|", ":", ""))
	b.WriteString(pick("c", "c", "g", "g", "ms", "h", "d", "s", "", "x", "msx", "C", "m"))
	for n := rng.IntN(4); n > 0; n-- {
		switch rng.IntN(6) {
		case 0:
			b.WriteString("|@" + pick("0.5", "0.1", "1", "0", "1.5", "-0.5", "x", "", "0.001", "1e-400", "0.3", "1e-320", "NaN"))
		case 1, 2:
			b.WriteString("|#")
			for t := rng.IntN(10); t > 0; t-- {
				b.WriteString(pick("env:prod", "env:dev", "region:us-east-1", "host:h1", "source:s1", "source:", "host:", "flag", "",
					":v", "url:http://x:1", "z:1", "a:2", "k:2", "k:1", "ünï:cödé", "k=v", "A:b", "runtime:go1.x", "cold_start:false",
					longSource+":ls", longSource+"x:lx"))
				if t > 1 {
					b.WriteString(",")
				}
			}
		case 3:
			b.WriteString("|T" + pick("1700000100", "0", "", "abc", "1234567890123", "170000000x"))
		case 4:
			b.WriteString(pick("|c:abc123", "|e:it-false", "|card:low", "|", "||"))
		case 5:
			b.WriteString(pick("|", "|x", "|", "|x", "|\xff"))
		}
	}
	return b.String()
}

// TestDifferential decodes a corpus of random datagrams, valid and invalid,
// with Decoder and with refDecode under several option sets, and requires
// identical items and rejections (floats compared bit for bit).
func TestDifferential(t *testing.T) {
	opts := []Options{
		{},
		{Flavor: FlavorEtsy},
		{MaxLineLen: 200, MaxTags: 8},
		{MaxTags: 1, DefaultSource: "lambda", SourceTags: []string{"fn", "host"}},
		{SourceTags: []string{}},
		{SourceTags: []string{longSource, "host"}},
	}
	// Each option set also decodes through a warm series cache, a large
	// one and one so small that it is full every few lines.
	decs := make([]*Decoder, len(opts))
	cached := make([]*Decoder, len(opts))
	for i, o := range opts {
		decs[i] = NewDecoder(o)
		o.SeriesCache = []int{4096, 8}[i%2]
		cached[i] = NewDecoder(o)
		cached[i].cache.noBypass = true // every metric line through the cache
	}
	var buf []byte // the cached decoders' payload, reused
	seen := map[string]int{}
	rng := rand.New(rand.NewPCG(13, 13))
	datagrams := 2000
	if testing.Short() {
		datagrams = 500
	}
	var b model.Batch
	for range datagrams {
		var sb strings.Builder
		for n := 1 + rng.IntN(12); n > 0; n-- {
			sb.WriteString(corpusLine(rng))
			sb.WriteString([]string{"\n", "\n", "\r\n", "\n\n"}[rng.IntN(4)])
		}
		p := sb.String()
		if rng.IntN(3) == 0 {
			p = strings.TrimRight(p, "\r\n") // no newline after the last line
		}
		for i, d := range decs {
			b.Reset()
			d.Decode(&b, []byte(p), now)
			got := result{Metrics: b.Metrics, Logs: b.Logs}
			for _, rj := range b.Rejects {
				got.Rejects = append(got.Rejects, rj.Reason+": "+string(rj.Line))
				seen[rj.Reason]++
			}
			seen["metrics"] += len(b.Metrics)
			seen["logs"] += len(b.Logs)
			want := refDecode(opts[i], p)
			if diff := diffResults(want, got); diff != "" {
				t.Fatalf("options %+v, Decode(%q) (-reference +got):\n%s", opts[i], p, diff)
			}
			b.Reset()
			buf = append(buf[:0], p...)
			cached[i].Decode(&b, buf, now)
			if got := batchResult(&b); !sameResult(want, got) {
				t.Fatalf("options %+v, cached Decode(%q) (-reference +got):\n%s", opts[i], p, diffResults(want, got))
			}
		}
	}
	for _, reason := range []string{ReasonInvalidLine, ReasonUnknownType, ReasonInvalidValue, ReasonNonFiniteValue,
		ReasonInvalidSampleRate, ReasonTooManyTags, ReasonLineTooLong, ReasonInvalidUTF8, ReasonEmptyName,
		ReasonInvalidEvent, ReasonInvalidTimestamp} {
		if seen[reason] == 0 {
			t.Errorf("the corpus never produced %s", reason)
		}
	}
	for i, d := range cached {
		if d.cache.hits == 0 {
			t.Errorf("options %+v: the cached decoder had no hits", opts[i])
		}
	}
	t.Logf("%d metrics, %d logs; rejections by reason: %v", seen["metrics"], seen["logs"], seen)
}

// TestDifferentialRealistic holds Decoder to refDecode on the benchmark's
// datagrams, the shape the fast paths are for.
func TestDifferentialRealistic(t *testing.T) {
	d := NewDecoder(Options{})
	var b model.Batch
	for _, p := range realisticDatagrams(16, 31) {
		b.Reset()
		d.Decode(&b, p, now)
		got := result{Metrics: b.Metrics, Logs: b.Logs}
		for _, rj := range b.Rejects {
			got.Rejects = append(got.Rejects, rj.Reason+": "+string(rj.Line))
		}
		if diff := diffResults(refDecode(Options{}, string(p)), got); diff != "" {
			t.Fatalf("Decode(%q) (-reference +got):\n%s", p, diff)
		}
		if len(b.Rejects) != 0 || len(b.Metrics) < 31 {
			t.Fatalf("realistic datagram: %d metrics, %d rejects", len(b.Metrics), len(b.Rejects))
		}
	}
}
