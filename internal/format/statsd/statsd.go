// Package statsd decodes StatsD and DogStatsD datagrams into model items.
//
// The decoder is a pure function over []byte: it appends to a model.Batch,
// starts no goroutines, logs nothing and keeps no global state. Every string
// it produces (names, sources, tag keys and values, log messages) aliases the
// payload passed to Decode through unsafe.String: the caller must not modify
// or reuse the payload while the batch items are in use, and must Clone items
// that outlive it. See README.md for the grammar and the mapping.
package statsd

import (
	"bytes"
	"math"
	"strconv"
	"unicode/utf8"
	"unsafe"

	"github.com/les-streams/les/internal/model"
)

// Rejection reasons recorded in model.Reject.Reason.
const (
	ReasonInvalidLine       = "invalid_line"
	ReasonUnknownType       = "unknown_type"
	ReasonInvalidValue      = "invalid_value"
	ReasonNonFiniteValue    = "non_finite_value"
	ReasonInvalidSampleRate = "invalid_sample_rate"
	ReasonTooManyTags       = "too_many_tags"
	ReasonLineTooLong       = "line_too_long"
	ReasonInvalidUTF8       = "invalid_utf8"
	ReasonEmptyName         = "empty_name"
	ReasonInvalidEvent      = "invalid_event"
	ReasonInvalidTimestamp  = "invalid_timestamp"
)

// MaxSampleCopies bounds how many copies of a sampled timer/histogram value
// are emitted for a sample rate r < 1 (round(1/r) copies, at most this many).
const MaxSampleCopies = 100

// Flavor selects how a signed gauge value ("g:-5|g", "g:+3|g") is read.
type Flavor uint8

const (
	// FlavorDogStatsD (the default) reads a signed gauge value as the
	// value itself, as the Datadog agent does: DogStatsD has no gauge
	// deltas, and datadog-go's Gauge("g", -5) writes "g:-5|g".
	FlavorDogStatsD Flavor = iota
	// FlavorEtsy reads a leading '+' or '-' on a gauge value as a change
	// of the current value (model.GaugeDelta), as Etsy's statsd, Telegraf
	// and hot-shots' gaugeDelta mean it.
	FlavorEtsy
)

// Flavor names as configuration spells them.
const (
	FlavorNameDogStatsD = "dogstatsd"
	FlavorNameEtsy      = "etsy"
)

// ParseFlavor maps "dogstatsd" or "etsy" ("" is dogstatsd) to a Flavor.
func ParseFlavor(s string) (Flavor, bool) {
	switch s {
	case "", FlavorNameDogStatsD:
		return FlavorDogStatsD, true
	case FlavorNameEtsy:
		return FlavorEtsy, true
	}
	return 0, false
}

func (f Flavor) String() string {
	if f == FlavorEtsy {
		return FlavorNameEtsy
	}
	return FlavorNameDogStatsD
}

// Options configures a Decoder. Zero values take the documented defaults.
type Options struct {
	// Flavor: FlavorDogStatsD (default) or FlavorEtsy.
	Flavor Flavor
	// MaxLineLen is the longest accepted line in bytes (default 8192).
	MaxLineLen int
	// MaxTags is the most tags accepted on one line (default 100).
	MaxTags int
	// DefaultSource is the Source of items that carry no source tag.
	DefaultSource string
	// SourceTags are tag keys whose value becomes the item's Source, in
	// order of preference (default ["source", "host"]). Such tags are not
	// kept as tags.
	SourceTags []string
}

// Decoder decodes StatsD lines. It holds only its options and is safe for
// concurrent use.
type Decoder struct {
	flavor        Flavor
	maxLineLen    int
	maxTags       int
	defaultSource string
	sourceTags    []string
}

// NewDecoder returns a decoder with o's defaults filled in.
func NewDecoder(o Options) *Decoder {
	d := &Decoder{flavor: o.Flavor, maxLineLen: o.MaxLineLen, maxTags: o.MaxTags, defaultSource: o.DefaultSource}
	if d.maxLineLen <= 0 {
		d.maxLineLen = 8192
	}
	if d.maxTags <= 0 {
		d.maxTags = 100
	}
	if o.SourceTags == nil {
		d.sourceTags = []string{"source", "host"}
	} else {
		d.sourceTags = append([]string(nil), o.SourceTags...)
	}
	return d
}

// Decode appends to dst one model.Metric per accepted metric value (one per
// line, several for DogStatsD packed values "a:1:2|ms" and for sampled
// timers), one model.Log per event or service check, and one model.Reject per
// refused line. Lines are separated by '\n' ("\r\n" is accepted); empty lines
// are skipped. now (Unix ns) is the timestamp of items without "|T" or "d:".
//
// All strings and byte slices in the appended items alias payload (no copy);
// they are valid only while payload is unchanged. Tags are sub-slices of
// dst.Arena, sorted with model.SortTags.
func (d *Decoder) Decode(dst *model.Batch, payload []byte, now int64) {
	for len(payload) > 0 {
		var line []byte
		if i := bytes.IndexByte(payload, '\n'); i >= 0 {
			line, payload = payload[:i], payload[i+1:]
		} else {
			line, payload = payload, nil
		}
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 {
			continue
		}
		d.decodeLine(dst, line, now)
	}
}

func str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

func (d *Decoder) decodeLine(dst *model.Batch, line []byte, now int64) {
	if len(line) > d.maxLineLen {
		dst.Reject(ReasonLineTooLong, line)
		return
	}
	if !utf8.Valid(line) {
		dst.Reject(ReasonInvalidUTF8, line)
		return
	}
	if line[0] == '_' {
		if bytes.HasPrefix(line, []byte("_e{")) {
			d.decodeEvent(dst, line, now)
			return
		}
		if bytes.HasPrefix(line, []byte("_sc|")) {
			d.decodeServiceCheck(dst, line, now)
			return
		}
	}
	colon := bytes.IndexByte(line, ':')
	bar := bytes.IndexByte(line, '|')
	if colon < 0 || bar < 0 || bar < colon {
		dst.Reject(ReasonInvalidLine, line)
		return
	}
	if colon == 0 {
		dst.Reject(ReasonEmptyName, line)
		return
	}
	nameb := line[:colon]
	var telegrafTags []byte
	if i := bytes.IndexByte(nameb, ','); i >= 0 {
		// Telegraf-style tags in the name: "name,k1=v1,k2=v2:1|c".
		nameb, telegrafTags = nameb[:i], nameb[i+1:]
		if len(nameb) == 0 {
			dst.Reject(ReasonEmptyName, line)
			return
		}
	}
	name := str(nameb)
	values := line[colon+1 : bar]
	rest := line[bar+1:]
	var typ []byte
	if i := bytes.IndexByte(rest, '|'); i >= 0 {
		typ, rest = rest[:i], rest[i+1:]
	} else {
		typ, rest = rest, nil
	}
	var kind model.Kind
	switch str(typ) {
	case "c":
		kind = model.Counter
	case "g":
		kind = model.Gauge
	case "ms", "h", "d":
		kind = model.Sample
	case "s":
		kind = model.Set
	default:
		dst.Reject(ReasonUnknownType, line)
		return
	}

	rate := 1.0
	ts := now
	source := d.defaultSource
	srcPrio := len(d.sourceTags)
	mark := dst.TagMark()
	ntags := 0
	if len(telegrafTags) > 0 {
		var reason string
		ntags, source, srcPrio, reason = d.parseTagList(dst, telegrafTags, '=', ntags, source, srcPrio)
		if reason != "" {
			d.reject(dst, reason, line, mark)
			return
		}
	}
	for len(rest) > 0 {
		var sec []byte
		sec, rest = nextField(rest)
		if len(sec) == 0 {
			continue
		}
		switch sec[0] {
		case '@':
			r, err := strconv.ParseFloat(str(sec[1:]), 64)
			if err != nil || !(r > 0 && r <= 1) {
				d.reject(dst, ReasonInvalidSampleRate, line, mark)
				return
			}
			rate = r
		case '#':
			var reason string
			ntags, source, srcPrio, reason = d.parseTags(dst, sec[1:], ntags, source, srcPrio)
			if reason != "" {
				d.reject(dst, reason, line, mark)
				return
			}
		case 'T':
			t, ok := parseSeconds(sec[1:])
			if !ok {
				d.reject(dst, ReasonInvalidTimestamp, line, mark)
				return
			}
			ts = t
		default:
			// "c:<container>" (origin detection) and other DogStatsD
			// extensions ("e:", "card:") are accepted and ignored.
		}
	}
	tags := d.finishTags(dst, mark)

	if kind == model.Set {
		if len(values) == 0 {
			d.reject(dst, ReasonInvalidValue, line, mark)
			return
		}
		dst.Metrics = append(dst.Metrics, model.Metric{
			Name: name, Value: SetValue(values), Timestamp: ts, Source: source, Tags: tags, Kind: model.Set,
		})
		return
	}

	// Validate every packed value before appending any, so a bad line
	// contributes nothing.
	start := len(dst.Metrics)
	for v := values; ; {
		var one []byte
		i := bytes.IndexByte(v, ':')
		if i >= 0 {
			one, v = v[:i], v[i+1:]
		} else {
			one = v
		}
		k := kind
		if kind == model.Gauge && d.flavor == FlavorEtsy && len(one) > 0 && (one[0] == '+' || one[0] == '-') {
			k = model.GaugeDelta
		}
		f, reason := parseValue(one)
		if reason != "" {
			clear(dst.Metrics[start:])
			dst.Metrics = dst.Metrics[:start]
			d.reject(dst, reason, line, mark)
			return
		}
		m := model.Metric{Name: name, Value: f, Timestamp: ts, Source: source, Tags: tags, Kind: k}
		switch k {
		case model.Counter:
			m.Value = f / rate
			if !model.IsFinite(m.Value) {
				clear(dst.Metrics[start:])
				dst.Metrics = dst.Metrics[:start]
				d.reject(dst, ReasonNonFiniteValue, line, mark)
				return
			}
			dst.Metrics = append(dst.Metrics, m)
		case model.Sample:
			for range sampleCopies(rate) {
				dst.Metrics = append(dst.Metrics, m)
			}
		default:
			dst.Metrics = append(dst.Metrics, m)
		}
		if i < 0 {
			break
		}
	}
}

// sampleCopies is how many copies of a sampled value stand for the
// unsampled stream: round(1/rate), between 1 and MaxSampleCopies.
func sampleCopies(rate float64) int {
	if rate >= 1 {
		return 1
	}
	n := math.Round(1 / rate)
	if n > MaxSampleCopies {
		return MaxSampleCopies
	}
	if n < 1 {
		return 1
	}
	return int(n)
}

func parseValue(b []byte) (float64, string) {
	if len(b) == 0 {
		return 0, ReasonInvalidValue
	}
	f, err := strconv.ParseFloat(str(b), 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return 0, ReasonNonFiniteValue
		}
		return 0, ReasonInvalidValue
	}
	if !model.IsFinite(f) {
		return 0, ReasonNonFiniteValue
	}
	return f, ""
}

func parseSeconds(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 12 {
		return 0, false
	}
	var s int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		s = s*10 + int64(c-'0')
	}
	return s * 1e9, true
}

func (d *Decoder) reject(dst *model.Batch, reason string, line []byte, mark int) {
	dst.TruncateTags(mark)
	dst.Reject(reason, line)
}

// parseTags appends the comma-separated DogStatsD tags ("k:v") of b to
// dst's arena, diverting source tags into source. It returns the updated tag
// count, source and source priority, and a rejection reason or "".
func (d *Decoder) parseTags(dst *model.Batch, b []byte, ntags int, source string, prio int) (int, string, int, string) {
	return d.parseTagList(dst, b, ':', ntags, source, prio)
}

// parseTagList is parseTags with sep between key and value (':' for
// DogStatsD "#k:v", '=' for Telegraf's "name,k=v").
func (d *Decoder) parseTagList(dst *model.Batch, b []byte, sep byte, ntags int, source string, prio int) (int, string, int, string) {
	for len(b) > 0 {
		var t []byte
		if i := bytes.IndexByte(b, ','); i >= 0 {
			t, b = b[:i], b[i+1:]
		} else {
			t, b = b, nil
		}
		if len(t) == 0 {
			continue
		}
		var k, v []byte
		if i := bytes.IndexByte(t, sep); i >= 0 {
			k, v = t[:i], t[i+1:]
		} else {
			k = t
		}
		if len(k) == 0 {
			continue
		}
		ks := str(k)
		isSource := false
		for p, st := range d.sourceTags {
			if st == ks {
				isSource = true
				if p < prio && len(v) > 0 {
					source, prio = str(v), p
				}
				break
			}
		}
		if isSource {
			continue
		}
		ntags++
		if ntags > d.maxTags {
			return ntags, source, prio, ReasonTooManyTags
		}
		dst.AddTag(ks, str(v))
	}
	return ntags, source, prio, ""
}

// finishTags sorts the tags added since mark and drops repeated keys (the
// first value in sort order is kept).
func (d *Decoder) finishTags(dst *model.Batch, mark int) model.Tags {
	tags := dst.TagsSince(mark)
	if len(tags) < 2 {
		return tags
	}
	model.SortTags(tags)
	n := 1
	for i := 1; i < len(tags); i++ {
		if tags[i].Key != tags[n-1].Key {
			tags[n] = tags[i]
			n++
		}
	}
	if n < len(tags) {
		dst.TruncateTags(mark + n)
		tags = dst.TagsSince(mark)
	}
	return tags
}

// SetValue maps a set member to model.Set's Value: the low 53 bits of the
// member's 64-bit FNV-1a hash, stable across processes and restarts.
func SetValue(member []byte) float64 {
	h := uint64(14695981039346656037)
	for _, c := range member {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return float64(h & (1<<53 - 1))
}

// nextField cuts rest at its next '|': the field before it and the rest
// after it (nil when there is none).
func nextField(rest []byte) (field, tail []byte) {
	if i := bytes.IndexByte(rest, '|'); i >= 0 {
		return rest[:i], rest[i+1:]
	}
	return rest, nil
}
