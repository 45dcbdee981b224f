// Package logmetric turns log records into metric points: CloudWatch Logs
// metric filters (pattern + metric transformation), Embedded Metric Format
// documents printed as log lines, and Lambda platform lines (START, END,
// REPORT and the older timeout/error lines).
//
// A Processor implements the consumer runner's Processor interface: the
// runner feeds it the log records of les.in.logs.*, and everything a batch
// produces is emitted at the next Advance and published under origin
// "derived", where the rollup consumer and the sinks pick it up.
//
// The package does no I/O. Its own metrics are registered in the
// selfmetric.Registry passed to New.
package logmetric

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/VictoriaMetrics/metrics"

	"github.com/les-streams/les/internal/format/emf"
	"github.com/les-streams/les/internal/format/jsonl"
	"github.com/les-streams/les/internal/format/lambda"
	"github.com/les-streams/les/internal/logmetric/pattern"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/wire"
)

// DefaultMaxPending bounds the points held between two Advance calls.
const DefaultMaxPending = 1 << 20

// Filter is one configured metric filter.
type Filter struct {
	// Name labels les_logmetric_matched_total{filter=...}.
	Name string
	// Metric is the compiled pattern and transformation.
	Metric *pattern.MetricFilter
	// Kind of the emitted points: model.Counter (summed per window, as
	// CloudWatch sums metric filter values) or model.Sample (rolled up
	// into a distribution: count, sum, min, max and percentiles).
	Kind model.Kind
	// NamespaceAs says where the transformation's metric namespace goes:
	// NamespaceTag (default) or NamespacePrefix.
	NamespaceAs string
}

// Where a filter's metric namespace goes (Filter.NamespaceAs).
const (
	// NamespaceTag: the point is <metric_name> with a tag
	// namespace=<metric_namespace>, as EMF points carry their namespace
	// (the default).
	NamespaceTag = "tag"
	// NamespacePrefix: the point is <metric_namespace>.<metric_name>,
	// without a namespace tag, the name CloudWatch metric filter output
	// has in Wavefront after CloudWatch → Wavefront.
	NamespacePrefix = "prefix"
)

// Config configures a Processor.
type Config struct {
	Filters []Filter
	// EMF decodes log messages that are EMF documents.
	EMF bool
	// Lambda turns Lambda platform lines into aws.lambda.* metrics.
	Lambda bool
	// MaxPending bounds the points waiting for Advance (default
	// DefaultMaxPending); more are dropped and counted in
	// les_logmetric_dropped_total.
	MaxPending int
}

// Processor derives metric points from log records. It is not safe for
// concurrent use (the runner serialises calls).
type Processor struct {
	cfg      Config
	filters  []filterState
	emf      emf.Decoder
	ext      lambda.Extractor
	scratch  model.Batch
	pending  model.Batch
	jsonBuf  []byte
	wireDec  wire.Decoder
	dimNames [][]string

	logs        *metrics.Counter
	points      *metrics.Counter
	dropped     *metrics.Counter
	lambdaLines *metrics.Counter
	emfDocs     *metrics.Counter
	emfRejected *selfmetric.ReasonCounters
}

type filterState struct {
	Filter
	m         *pattern.Matcher
	json      bool
	name      string // the points' name (with the namespace when prefixed)
	namespace string // the namespace tag's value, "" for none
	unit      string
	matched   *metrics.Counter
}

// New returns a Processor for cfg. reg receives its self-metrics:
// les_logmetric_logs_total, les_logmetric_matched_total{filter},
// les_logmetric_points_total, les_logmetric_lambda_lines_total,
// les_logmetric_emf_docs_total, les_logmetric_emf_rejected_total{reason}
// and les_logmetric_dropped_total.
func New(cfg Config, reg *selfmetric.Registry) (*Processor, error) {
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	p := &Processor{cfg: cfg,
		logs:        reg.Counter("les_logmetric_logs_total"),
		points:      reg.Counter("les_logmetric_points_total"),
		dropped:     reg.Counter("les_logmetric_dropped_total"),
		lambdaLines: reg.Counter("les_logmetric_lambda_lines_total"),
		emfDocs:     reg.Counter("les_logmetric_emf_docs_total"),
		emfRejected: reg.NewReasonCounters("les_logmetric_emf_rejected_total"),
	}
	names := map[string]bool{}
	for _, f := range cfg.Filters {
		if f.Metric == nil {
			return nil, errors.New("logmetric: filter without a compiled metric filter")
		}
		if f.Name == "" || names[f.Name] {
			return nil, fmt.Errorf("logmetric: filter name %q empty or repeated", f.Name)
		}
		if f.Kind != model.Counter && f.Kind != model.Sample && f.Kind != model.Gauge {
			return nil, fmt.Errorf("logmetric: filter %s: kind %v not counter, sample or gauge", f.Name, f.Kind)
		}
		names[f.Name] = true
		t := f.Metric.Transformation()
		name, ns := t.MetricName, t.MetricNamespace
		switch f.NamespaceAs {
		case "", NamespaceTag:
		case NamespacePrefix:
			if ns != "" {
				name, ns = ns+"."+name, ""
			}
		default:
			return nil, fmt.Errorf("logmetric: filter %s: namespace_as %q is not %s or %s", f.Name, f.NamespaceAs, NamespaceTag, NamespacePrefix)
		}
		p.filters = append(p.filters, filterState{
			Filter:    f,
			m:         f.Metric.Pattern().NewMatcher(),
			json:      f.Metric.Pattern().Kind() == pattern.JSON,
			name:      name,
			namespace: ns,
			unit:      t.Unit,
			matched:   reg.Counter("les_logmetric_matched_total", "filter", f.Name),
		})
	}
	return p, nil
}

// Add derives points from the log records of b. Points are copied into
// the processor (b is not kept) and emitted by the next Advance.
func (p *Processor) Add(b *model.Batch, now int64) {
	for i := range b.Logs {
		p.addLog(&b.Logs[i])
	}
}

func (p *Processor) addLog(l *model.Log) {
	p.logs.Inc()
	p.scratch.Reset()
	msg := l.Message
	if p.cfg.Lambda && p.ext.FromLine(&p.scratch, l.Source, msg, l.Timestamp) {
		p.lambdaLines.Inc()
	}
	if p.cfg.EMF && looksLikeEMF(msg) {
		p.emf.DefaultSource = l.Source
		n, reason := p.emf.DecodeDoc(&p.scratch, msg)
		switch {
		case reason == "":
			if n > 0 {
				p.emfDocs.Inc()
			}
		case reason != emf.ReasonMissingAWS:
			p.emfRejected.Inc(reason)
		}
	}
	jsonLine := []byte(nil)
	for i := range p.filters {
		f := &p.filters[i]
		line := msg
		if f.json && !isJSONObject(msg) {
			// A structured log record whose message is not itself JSON is
			// matched as the JSON object of its fields.
			if jsonLine == nil {
				p.jsonBuf = appendLogJSON(p.jsonBuf[:0], l)
				jsonLine = p.jsonBuf
			}
			line = jsonLine
		}
		pt, ok := f.Metric.Apply(f.m, line)
		if !ok {
			continue
		}
		if !pt.Default {
			f.matched.Inc()
		}
		p.addFilterPoint(f, l, pt)
	}
	p.keep()
}

// addFilterPoint appends one filter point to scratch; its tags are the
// dimensions plus namespace and unit (as EMF points have them).
func (p *Processor) addFilterPoint(f *filterState, l *model.Log, pt pattern.Point) {
	mark := p.scratch.TagMark()
	for k, v := range pt.Dimensions {
		p.scratch.AddTag(k, v)
	}
	if f.namespace != "" {
		if _, dup := pt.Dimensions[emf.TagNamespace]; !dup {
			p.scratch.AddTag(emf.TagNamespace, f.namespace)
		}
	}
	if f.unit != "" {
		if _, dup := pt.Dimensions[emf.TagUnit]; !dup {
			p.scratch.AddTag(emf.TagUnit, f.unit)
		}
	}
	tags := p.scratch.TagsSince(mark)
	model.SortTags(tags)
	p.scratch.Metrics = append(p.scratch.Metrics, model.Metric{
		Name:      f.name,
		Value:     pt.Value,
		Timestamp: l.Timestamp,
		Source:    l.Source,
		Tags:      tags,
		Kind:      f.Kind,
	})
}

// keep copies the points of scratch into pending, owning their strings.
func (p *Processor) keep() {
	for i := range p.scratch.Metrics {
		if len(p.pending.Metrics) >= p.cfg.MaxPending {
			p.dropped.Add(len(p.scratch.Metrics) - i)
			return
		}
		m := p.scratch.Metrics[i]
		p.pending.Metrics = append(p.pending.Metrics, p.own(&m))
	}
}

func (p *Processor) own(m *model.Metric) model.Metric {
	c := *m
	c.Name = strings.Clone(m.Name)
	c.Source = strings.Clone(m.Source)
	mark := p.pending.TagMark()
	for _, t := range m.Tags {
		p.pending.AddTag(strings.Clone(t.Key), strings.Clone(t.Value))
	}
	c.Tags = p.pending.TagsSince(mark)
	return c
}

// Advance appends every point derived since the last call to out.
func (p *Processor) Advance(now int64, out *model.Batch) {
	if len(p.pending.Metrics) == 0 {
		return
	}
	out.Metrics = append(out.Metrics, p.pending.Metrics...)
	p.points.Add(len(p.pending.Metrics))
	// out now references pending's strings and tags; start a fresh batch
	// rather than reusing memory out still points into.
	p.pending = model.Batch{}
}

// Pending is the number of points waiting for Advance.
func (p *Processor) Pending() int { return len(p.pending.Metrics) }

// MarshalState returns the points not yet emitted (normally none: the
// runner calls Advance before it checkpoints; a final checkpoint on
// shutdown may not), encoded as one uncompressed wire record, or nil.
func (p *Processor) MarshalState() ([]byte, error) {
	if len(p.pending.Metrics) == 0 {
		return nil, nil
	}
	enc := wire.NewEncoder(wire.SignalMetrics)
	enc.AppendBatch(&p.pending)
	return enc.Finish(nil, 0, 0, wire.CompressionNone)
}

// UnmarshalState restores points saved by MarshalState.
func (p *Processor) UnmarshalState(b []byte) error {
	p.pending = model.Batch{}
	if len(b) == 0 {
		return nil
	}
	var tmp model.Batch
	if _, err := p.wireDec.Decode(&tmp, b); err != nil {
		return fmt.Errorf("logmetric: state: %w", err)
	}
	for i := range tmp.Metrics {
		p.pending.Metrics = append(p.pending.Metrics, p.own(&tmp.Metrics[i]))
	}
	return nil
}

// looksLikeEMF is a cheap test before the EMF decoder runs: a JSON object
// (possibly after Lambda's text prefix, which the log decoder already
// removed) mentioning "_aws".
func looksLikeEMF(msg []byte) bool {
	return isJSONObject(msg) && bytes.Contains(msg, []byte(`"_aws"`))
}

func isJSONObject(msg []byte) bool {
	msg = bytes.TrimLeft(msg, " \t\r\n")
	return len(msg) > 0 && msg[0] == '{'
}

// appendLogJSON renders a log record as one flat JSON object, so JSON
// filter patterns match records whose message is not JSON (NDJSON lines
// whose fields the log decoder split into Level, RequestID, Message and
// attributes). Nested attributes keep their dotted names as keys
// (`$.['http.status']`), except that a dotted attribute also answers to
// its nested path: keys are expanded into objects when no key is a prefix
// of another.
func appendLogJSON(dst []byte, l *model.Log) []byte {
	type kv struct{ k, v string }
	var fields []kv
	if l.Level != "" {
		fields = append(fields, kv{"level", l.Level})
	}
	if l.RequestID != "" {
		fields = append(fields, kv{"requestId", l.RequestID})
	}
	if l.Source != "" {
		fields = append(fields, kv{"source", l.Source})
	}
	fields = append(fields, kv{"message", string(l.Message)})
	for _, a := range l.Attrs {
		fields = append(fields, kv{a.Key, a.Value})
	}
	// Sort so that keys sharing a dotted prefix are contiguous ('.' sorts
	// first), then expand dotted keys into nested objects unless a key is
	// also the prefix of another.
	slices.SortStableFunc(fields, func(a, b kv) int { return compareDotted(a.k, b.k) })
	nested := true
	keys := make(map[string]bool, len(fields))
	for _, f := range fields {
		if keys[f.k] {
			nested = false
		}
		keys[f.k] = true
	}
	for _, f := range fields {
		for i := 0; nested && i < len(f.k); i++ {
			if f.k[i] == '.' && keys[f.k[:i]] {
				nested = false
			}
		}
	}
	dst = append(dst, '{')
	var open []string // path of currently open objects
	for i, f := range fields {
		var parts []string
		if nested {
			parts = strings.Split(f.k, ".")
		} else {
			parts = []string{f.k}
		}
		// Close objects not shared with this key's path.
		common := 0
		for common < len(open) && common < len(parts)-1 && open[common] == parts[common] {
			common++
		}
		for len(open) > common {
			dst = append(dst, '}')
			open = open[:len(open)-1]
		}
		if i > 0 && dst[len(dst)-1] != '{' {
			dst = append(dst, ',')
		}
		for _, part := range parts[len(open) : len(parts)-1] {
			dst = jsonl.AppendString(dst, part)
			dst = append(dst, ':', '{')
			open = append(open, part)
		}
		dst = jsonl.AppendString(dst, parts[len(parts)-1])
		dst = append(dst, ':')
		dst = jsonl.AppendString(dst, f.v)
	}
	for range open {
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// compareDotted orders keys byte-wise with '.' lowest.
func compareDotted(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if x == '.' {
			return -1
		}
		if y == '.' {
			return 1
		}
		if x < y {
			return -1
		}
		return 1
	}
	return len(a) - len(b)
}
