// Package emf decodes CloudWatch Embedded Metric Format documents into
// model.Metric points, validating them the way CloudWatch Logs does and
// rejecting a whole document with the reason CloudWatch would give.
//
// Every value becomes a model.Sample (single values and arrays alike):
// CloudWatch treats each EMF value as one data point of a statistic set, so
// a Sample keeps Sum, SampleCount, Min, Max and percentiles recoverable after
// roll-up, where a Gauge would keep only the last value of a window.
//
// The package is pure: no goroutines, logging or package state.
package emf

import (
	"bytes"

	"github.com/les-streams/les/internal/format/jsonscan"
	"github.com/les-streams/les/internal/format/logline"
	"github.com/les-streams/les/internal/model"
)

// Limits from the EMF specification and CloudWatch quotas.
const (
	MaxMetrics        = 100  // MetricDefinitions per MetricDirective
	MaxDimensions     = 30   // keys per DimensionSet
	MaxValues         = 100  // values in a metric target array
	MaxDimValueLen    = 1024 // characters in a dimension value
	MaxNamespaceLen   = 1024
	MaxNameLen        = 1024
	MaxHistogramVals  = 150   // Values in a {"Values","Counts"} target
	MaxHistogramCount = 10000 // sum of Counts in a {"Values","Counts"} target
)

// Reject reasons.
const (
	ReasonInvalidJSON        = "invalid_json"         // not one JSON object
	ReasonMissingAWS         = "missing_aws"          // no _aws object at the root
	ReasonMissingTimestamp   = "missing_timestamp"    // no _aws.Timestamp
	ReasonInvalidTimestamp   = "invalid_timestamp"    // not a non-negative integer of ms
	ReasonInvalidMetadata    = "invalid_metadata"     // CloudWatchMetrics/directive/definition malformed
	ReasonTooManyMetrics     = "too_many_metrics"     // > MaxMetrics in a directive
	ReasonTooManyDimensions  = "too_many_dimensions"  // > MaxDimensions in a set
	ReasonTooManyValues      = "too_many_values"      // > MaxValues in an array
	ReasonInvalidDimension   = "invalid_dimension"    // target missing, not a string, or too long
	ReasonInvalidMetricValue = "invalid_metric_value" // target missing or not numeric
	ReasonInvalidUnit        = "invalid_unit"         // Unit not a CloudWatch unit
	ReasonInvalidResolution  = "invalid_storage_resolution"
)

// Tag keys added to every point besides the dimensions. A dimension with
// the same key takes precedence.
const (
	TagNamespace = "namespace"
	TagUnit      = "unit"
)

// Decoder decodes EMF documents. The zero value is ready to use; it keeps
// scratch space between calls and is not safe for concurrent use.
type Decoder struct {
	// DefaultSource is the Source of points whose dimension set has no
	// FunctionName or ServiceName dimension.
	DefaultSource string

	root []member
}

type member struct {
	key []byte // unescaped
	val []byte
}

// Decode decodes payload, one or more EMF documents separated by newlines
// or whitespace (the CloudWatch agent's TCP/UDP 25888 framing; a document
// may also be pretty-printed over several lines). A line that does not
// start with '{' may carry Lambda's text prefix ("<ts>\t<requestId>\t<LEVEL>\t")
// before the document. Each invalid document is rejected with its reason
// and decoding continues after the line it ends on. The error is always nil
// (kept for the format decoder contract).
//
// Ownership: Name, Source and tag strings alias payload (keys or values
// with JSON escapes are copies); Rejects' Line aliases payload.
func (d *Decoder) Decode(dst *model.Batch, payload []byte) error {
	i := 0
	for {
		i = jsonscan.SkipSpace(payload, i)
		if i >= len(payload) {
			return nil
		}
		var doc []byte
		if payload[i] == '{' {
			if _, end, ok := jsonscan.Value(payload, i); ok {
				doc, i = payload[i:end], end
			}
		}
		if doc == nil {
			end := bytes.IndexByte(payload[i:], '\n')
			if end < 0 {
				end = len(payload) - i
			}
			doc, i = payload[i:i+end], i+end
		}
		if _, reason := d.DecodeDoc(dst, doc); reason != "" {
			dst.Reject(reason, doc)
		}
	}
}

// DecodeDoc decodes one document and appends its points. It returns how
// many points it appended and, if the document is invalid, the reject
// reason (nothing is appended then, and nothing is recorded in
// dst.Rejects: callers such as a log-to-metric stage use ReasonMissingAWS
// to tell "not EMF" from "bad EMF"). Ownership is as for Decode.
func (d *Decoder) DecodeDoc(dst *model.Batch, doc []byte) (n int, reason string) {
	doc = bytes.TrimSpace(doc)
	if len(doc) > 0 && doc[0] != '{' {
		t, ok := logline.ParseText(doc)
		if !ok {
			return 0, ReasonInvalidJSON
		}
		doc = bytes.TrimSpace(t.Message)
	}
	if jsonscan.KindOf(doc) != jsonscan.Object {
		return 0, ReasonInvalidJSON
	}
	clear(d.root)
	d.root = d.root[:0]
	var aws []byte
	it := jsonscan.Members(doc) // validates the whole document as it goes
	for it.Next() {
		key := it.Key
		if it.KeyEscaped {
			key = jsonscan.Unescape(nil, key)
		}
		if string(key) == "_aws" {
			aws = it.Val
		}
		d.root = append(d.root, member{key: key, val: it.Val})
	}
	if it.Err() {
		return 0, ReasonInvalidJSON
	}
	if jsonscan.KindOf(aws) != jsonscan.Object {
		return 0, ReasonMissingAWS
	}
	start, mark := len(dst.Metrics), dst.TagMark()
	if reason := d.aws(dst, aws); reason != "" {
		clear(dst.Metrics[start:])
		dst.Metrics = dst.Metrics[:start]
		dst.TruncateTags(mark)
		return 0, reason
	}
	return len(dst.Metrics) - start, ""
}

// lookup returns the root member named key (the last one if repeated, as
// encoding/json does).
func (d *Decoder) lookup(key []byte) ([]byte, bool) {
	for i := len(d.root) - 1; i >= 0; i-- {
		if bytes.Equal(d.root[i].key, key) {
			return d.root[i].val, true
		}
	}
	return nil, false
}

func (d *Decoder) aws(dst *model.Batch, aws []byte) string {
	var ts int64
	var hasTS bool
	var directives []byte
	it := jsonscan.Members(aws)
	for it.Next() {
		switch {
		case it.KeyIs("Timestamp"):
			ms, ok := jsonscan.Int(it.Val)
			if !ok || ms < 0 || ms > 9_000_000_000_000 {
				return ReasonInvalidTimestamp
			}
			ts, hasTS = ms*1e6, true
		case it.KeyIs("CloudWatchMetrics"):
			directives = it.Val
		}
	}
	if !hasTS {
		return ReasonMissingTimestamp
	}
	if jsonscan.KindOf(directives) != jsonscan.Array {
		return ReasonInvalidMetadata
	}
	dirs := jsonscan.Elems(directives)
	for dirs.Next() {
		if r := d.directive(dst, dirs.Val, ts); r != "" {
			return r
		}
	}
	return ""
}

func (d *Decoder) directive(dst *model.Batch, dir []byte, ts int64) string {
	var ns string
	var dims, metrics []byte
	it := jsonscan.Members(dir)
	for it.Next() {
		switch {
		case it.KeyIs("Namespace"):
			s, ok := jsonscan.Str(it.Val)
			if !ok || s == "" || len(s) > MaxNamespaceLen {
				return ReasonInvalidMetadata
			}
			ns = s
		case it.KeyIs("Dimensions"):
			dims = it.Val
		case it.KeyIs("Metrics"):
			metrics = it.Val
		}
	}
	if it.Err() || ns == "" || jsonscan.KindOf(dims) != jsonscan.Array || jsonscan.KindOf(metrics) != jsonscan.Array {
		return ReasonInvalidMetadata
	}
	// Validate the dimension sets once.
	sets := jsonscan.Elems(dims)
	for sets.Next() {
		if jsonscan.KindOf(sets.Val) != jsonscan.Array {
			return ReasonInvalidMetadata
		}
		n := 0
		keys := jsonscan.Elems(sets.Val)
		for keys.Next() {
			if n++; n > MaxDimensions {
				return ReasonTooManyDimensions
			}
			k, ok := jsonscan.Bytes(keys.Val)
			if !ok || len(k) == 0 {
				return ReasonInvalidMetadata
			}
			target, ok := d.lookup(k)
			if !ok {
				return ReasonInvalidDimension
			}
			s, ok := jsonscan.Str(target)
			if !ok || len(s) > MaxDimValueLen {
				return ReasonInvalidDimension
			}
		}
	}
	n := 0
	defs := jsonscan.Elems(metrics)
	for defs.Next() {
		if n++; n > MaxMetrics {
			return ReasonTooManyMetrics
		}
	}
	if sets.Err() || defs.Err() {
		return ReasonInvalidMetadata
	}
	defs = jsonscan.Elems(metrics)
	for defs.Next() {
		if r := d.metric(dst, defs.Val, ns, dims, ts); r != "" {
			return r
		}
	}
	return ""
}

func (d *Decoder) metric(dst *model.Batch, def []byte, ns string, dims []byte, ts int64) string {
	var name, unit string
	var nameRaw []byte
	it := jsonscan.Members(def)
	for it.Next() {
		switch {
		case it.KeyIs("Name"):
			b, ok := jsonscan.Bytes(it.Val)
			if !ok || len(b) == 0 || len(b) > MaxNameLen {
				return ReasonInvalidMetadata
			}
			nameRaw, name = b, jsonscan.Alias(b)
		case it.KeyIs("Unit"):
			s, ok := jsonscan.Str(it.Val)
			if !ok || !validUnit(s) {
				return ReasonInvalidUnit
			}
			unit = s
		case it.KeyIs("StorageResolution"):
			r, ok := jsonscan.Int(it.Val)
			if !ok || (r != 1 && r != 60) {
				return ReasonInvalidResolution
			}
		}
	}
	if it.Err() || name == "" {
		return ReasonInvalidMetadata
	}
	target, ok := d.lookup(nameRaw)
	if !ok {
		return ReasonInvalidMetricValue
	}
	if r := checkValues(target); r != "" {
		return r
	}
	sets := jsonscan.Elems(dims)
	seen := false
	for sets.Next() {
		seen = true
		d.emitSet(dst, sets.Val, target, name, ns, unit, ts)
	}
	if !seen { // "Dimensions": [] is treated like [[]]
		d.emitSet(dst, nil, target, name, ns, unit, ts)
	}
	return ""
}

// emitSet appends the points of one metric for one validated dimension set.
func (d *Decoder) emitSet(dst *model.Batch, set, target []byte, name, ns, unit string, ts int64) {
	mark := dst.TagMark()
	var fn, svc string
	hasNS, hasUnit := false, false
	keys := jsonscan.Elems(set)
	for set != nil && keys.Next() {
		k, _ := jsonscan.Bytes(keys.Val)
		tv, _ := d.lookup(k)
		val, _ := jsonscan.Str(tv)
		key := jsonscan.Alias(k)
		dst.AddTag(key, val)
		switch key {
		case "FunctionName":
			fn = val
		case "ServiceName":
			svc = val
		case TagNamespace:
			hasNS = true
		case TagUnit:
			hasUnit = true
		}
	}
	if !hasNS {
		dst.AddTag(TagNamespace, ns)
	}
	if unit != "" && !hasUnit {
		dst.AddTag(TagUnit, unit)
	}
	source := d.DefaultSource
	if fn != "" {
		source = fn
	} else if svc != "" {
		source = svc
	}
	tags := dedupe(dst, mark)
	emitValues(dst, target, model.Metric{Name: name, Timestamp: ts, Source: source, Tags: tags, Kind: model.Sample})
}

// dedupe sorts the tags since mark and drops repeated keys (a dimension
// set naming the same key twice).
func dedupe(dst *model.Batch, mark int) model.Tags {
	tags := dst.TagsSince(mark)
	model.SortTags(tags)
	w := 0
	for r := range tags {
		if w > 0 && tags[w-1].Key == tags[r].Key {
			continue
		}
		tags[w] = tags[r]
		w++
	}
	dst.TruncateTags(mark + w)
	return dst.TagsSince(mark)
}

// checkValues validates a metric target: a number, an array of at most
// MaxValues numbers, or {"Values":[...],"Counts":[...]}.
func checkValues(v []byte) string {
	switch jsonscan.KindOf(v) {
	case jsonscan.Number:
		if _, ok := finite(v); !ok {
			return ReasonInvalidMetricValue
		}
		return ""
	case jsonscan.Array:
		n := 0
		it := jsonscan.Elems(v)
		for it.Next() {
			if n++; n > MaxValues {
				return ReasonTooManyValues
			}
			if _, ok := finite(it.Val); !ok {
				return ReasonInvalidMetricValue
			}
		}
		if it.Err() {
			return ReasonInvalidMetricValue
		}
		return ""
	case jsonscan.Object:
		return checkHistogram(v)
	}
	return ReasonInvalidMetricValue
}

func finite(v []byte) (float64, bool) {
	f, ok := jsonscan.Float(v)
	return f, ok && model.IsFinite(f)
}

func histogram(v []byte) (values, counts []byte) {
	it := jsonscan.Members(v)
	for it.Next() {
		switch {
		case it.KeyIs("Values"):
			values = it.Val
		case it.KeyIs("Counts"):
			counts = it.Val
		}
	}
	return values, counts
}

func checkHistogram(v []byte) string {
	values, counts := histogram(v)
	if jsonscan.KindOf(values) != jsonscan.Array {
		return ReasonInvalidMetricValue
	}
	nv := 0
	it := jsonscan.Elems(values)
	for it.Next() {
		if nv++; nv > MaxHistogramVals {
			return ReasonTooManyValues
		}
		if _, ok := finite(it.Val); !ok {
			return ReasonInvalidMetricValue
		}
	}
	if counts == nil {
		return ""
	}
	if jsonscan.KindOf(counts) != jsonscan.Array {
		return ReasonInvalidMetricValue
	}
	nc, total := 0, int64(0)
	ct := jsonscan.Elems(counts)
	for ct.Next() {
		c, ok := jsonscan.Int(ct.Val)
		if !ok || c < 0 {
			return ReasonInvalidMetricValue
		}
		if total += c; total > MaxHistogramCount {
			return ReasonTooManyValues
		}
		nc++
	}
	if nc != nv {
		return ReasonInvalidMetricValue
	}
	return ""
}

// emitValues appends one point per value of a validated target.
func emitValues(dst *model.Batch, v []byte, m model.Metric) {
	switch jsonscan.KindOf(v) {
	case jsonscan.Number:
		m.Value, _ = jsonscan.Float(v)
		dst.Metrics = append(dst.Metrics, m)
	case jsonscan.Array:
		it := jsonscan.Elems(v)
		for it.Next() {
			m.Value, _ = jsonscan.Float(it.Val)
			dst.Metrics = append(dst.Metrics, m)
		}
	case jsonscan.Object:
		values, counts := histogram(v)
		vi := jsonscan.Elems(values)
		ci := jsonscan.Elems(counts)
		for vi.Next() {
			m.Value, _ = jsonscan.Float(vi.Val)
			c := int64(1)
			if counts != nil && ci.Next() {
				c, _ = jsonscan.Int(ci.Val)
			}
			for range c {
				dst.Metrics = append(dst.Metrics, m)
			}
		}
	}
}

func validUnit(s string) bool {
	switch s {
	case "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes",
		"Gigabytes", "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits",
		"Percent", "Count", "Bytes/Second", "Kilobytes/Second", "Megabytes/Second",
		"Gigabytes/Second", "Terabytes/Second", "Bits/Second", "Kilobits/Second",
		"Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None":
		return true
	}
	return false
}
