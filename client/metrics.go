package client

import (
	"strconv"
	"time"
)

// Metric methods write one DogStatsD line, "<namespace><name>:<value>|<type>"
// followed by "|#<tags>" when there are per-call or constant tags. They do
// not block and do not allocate; a call that cannot be sent is counted in
// Stats and otherwise ignored. See README.md for how les maps each type.
//
// Sanitising, byte for byte (lengths never change): in names and tag keys
// control bytes, DEL, ':', '|' and ',' become '_'; in tag values control
// bytes, DEL, '|' and ',' become '_' (':' is kept: the first ':' of a tag
// separates key and value); invalid UTF-8 becomes '_'. A name starting with
// "_e{" gets '_' for its '{'. Tags with an empty key are skipped; an empty
// value sends the bare key (les reads it as the value ""). A per-call tag
// whose key equals a constant tag's key replaces it; the tag "source" (or
// "host") sets the les source of that line.

// Count adds value to the counter name (type "c").
func (c *Client) Count(name string, value int64, tags ...Tag) {
	var nb [24]byte
	c.metric(name, strconv.AppendInt(nb[:0], value, 10), "", "c", tags, false)
}

// Incr adds 1 to the counter name.
func (c *Client) Incr(name string, tags ...Tag) {
	c.metric(name, []byte{'1'}, "", "c", tags, false)
}

// Gauge sets the gauge name to value (type "g"). A negative value is sent
// as two lines in one datagram, "name:0|g" then "name:-5|g": StatsD
// (and les' etsy flavor) reads a leading '-' as a decrement, DogStatsD as
// a negative value, and both arrive at -5 this way.
func (c *Client) Gauge(name string, value float64, tags ...Tag) {
	if !finite(value) {
		c.metrics.reject()
		return
	}
	var nb [32]byte
	c.metric(name, appendValue(nb[:0], value), "", "g", tags, value < 0)
}

// Distribution records one sample of name (type "d"): les rolls samples
// up into mergeable distributions with any percentile.
func (c *Client) Distribution(name string, value float64, tags ...Tag) {
	c.sample(name, value, "d", tags)
}

// Histogram records one sample of name (type "h"); les treats it like a
// Distribution.
func (c *Client) Histogram(name string, value float64, tags ...Tag) {
	c.sample(name, value, "h", tags)
}

// Timing records a duration of name in milliseconds (type "ms"); les
// treats it like a Distribution.
func (c *Client) Timing(name string, d time.Duration, tags ...Tag) {
	c.sample(name, float64(d)/float64(time.Millisecond), "ms", tags)
}

// Set adds member to the set name (type "s"): les counts distinct
// members per window. In member, control bytes, DEL, '|' and ':' become
// '_'; an empty member is dropped.
func (c *Client) Set(name, member string, tags ...Tag) {
	if member == "" {
		c.metrics.reject()
		return
	}
	c.metric(name, nil, member, "s", tags, false)
}

func (c *Client) sample(name string, value float64, typ string, tags []Tag) {
	if !finite(value) {
		c.metrics.reject()
		return
	}
	var nb [32]byte
	c.metric(name, appendValue(nb[:0], value), "", typ, tags, false)
}

// metric writes one line (two with zeroFirst: "name:0|typ…" first). The
// value is num, or member (sanitised) when num is nil.
func (c *Client) metric(name string, num []byte, member, typ string, tags []Tag, zeroFirst bool) {
	p := c.metrics
	if name == "" {
		p.reject()
		return
	}
	tl, nt, override := c.tagsLen(tags)
	vl := len(num)
	if num == nil {
		vl = len(member)
	}
	line := len(c.ns) + len(name) + 1 + vl + 1 + len(typ) + 1
	if nt > 0 {
		line += 2 + tl
	}
	n, lines := line, 1
	if zeroFirst {
		n += line - vl + 1
		lines = 2
	}
	if nt > MaxTags || n > p.max {
		p.reject()
		return
	}
	cur, full := p.begin(n, lines)
	if cur == nil {
		return
	}
	b := cur.b
	if zeroFirst {
		b = c.putLine(b, line-vl+1, name, []byte{'0'}, "", typ, tags, nt, override)
	}
	cur.b = c.putLine(b, line, name, num, member, typ, tags, nt, override)
	p.commit(cur, full, lines)
}

// putLine appends the n-byte line appendLine would append: the hot path.
// It copies the caller's strings and checks them in the same pass
// (copyClass), writes into the room reserved for the line instead of
// appending piece by piece, and, in the rare case that a string needs
// sanitising, writes the line again with appendLine. cap(b) must leave
// room for n bytes (begin reserved them).
func (c *Client) putLine(b []byte, n int, name string, num []byte, member, typ string, tags []Tag, nt int, override bool) []byte {
	start := len(b)
	b = b[:start+n]
	w := start
	if len(c.ns) > 0 {
		w += copy(b[w:], c.ns)
	}
	var kc, vc, mc byte // classes seen in names and keys, in values, in the member
	w, kc = put(b, w, name, kc)
	b[w] = ':'
	w++
	if num != nil {
		w = putSmall(b, w, num)
	} else {
		w, mc = put(b, w, member, mc)
	}
	b[w] = '|'
	w++
	w = putSmall(b, w, typ)
	if nt > 0 {
		b[w], b[w+1] = '|', '#'
		w += 2
		first := true
		for _, t := range tags {
			if t.Key == "" {
				continue
			}
			if !first {
				b[w] = ','
				w++
			}
			first = false
			w, kc = put(b, w, t.Key, kc)
			if t.Value != "" {
				b[w] = ':'
				w++
				w, vc = put(b, w, t.Value, vc)
			}
		}
		if !override {
			if len(c.constEnc) > 0 {
				if !first {
					b[w] = ','
					w++
				}
				w += copy(b[w:], c.constEnc)
			}
		} else {
			for _, ct := range c.consts { // sanitised in New
				if hasKey(tags, ct.key) {
					continue
				}
				if !first {
					b[w] = ','
					w++
				}
				first = false
				w += copy(b[w:], ct.key)
				if ct.value != "" {
					b[w] = ':'
					w++
					w += copy(b[w:], ct.value)
				}
			}
		}
	}
	b[w] = '\n'
	if kc&(className|classNonASCII) != 0 || vc&(classValue|classNonASCII) != 0 || mc&(classMember|classNonASCII) != 0 {
		return c.appendLine(b[:start], name, num, member, typ, tags, nt, override)
	}
	if len(c.ns) == 0 && len(name) >= 3 && name[0] == '_' && name[1] == 'e' && name[2] == '{' {
		b[start+2] = '_'
	}
	return b
}

// put copies s into b at w, ORs the byteClass entries of its bytes into
// acc, and returns the offset after it.
func put(b []byte, w int, s string, acc byte) (int, byte) {
	return w + len(s), acc | copyClass(b[w:w+len(s)], s)
}

// putSmall copies a few bytes (a value, a type) into b at w without a
// call to memmove.
func putSmall[S string | []byte](b []byte, w int, s S) int {
	d := b[w : w+len(s)]
	for i := range len(s) {
		d[i] = s[i]
	}
	return w + len(s)
}

// copyClass copies s into d (len(d) == len(s)) and returns the OR of the
// byteClass entries of its bytes, 8 bytes per step with two accumulators.
// Not inlined: inside putLine the accumulator would live on the stack,
// one store-to-load round trip per byte.
//
//go:noinline
func copyClass(d []byte, s string) byte {
	d = d[:len(s)]
	var a, z byte
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := s[i : i+8]
		copy(d[i:i+8], w)
		a |= byteClass[w[0]] | byteClass[w[1]] | byteClass[w[2]] | byteClass[w[3]]
		z |= byteClass[w[4]] | byteClass[w[5]] | byteClass[w[6]] | byteClass[w[7]]
	}
	for ; i < len(s); i++ {
		c := s[i]
		d[i] = c
		a |= byteClass[c]
	}
	return a | z
}

// appendLine appends one line, sanitising every string (appendClean):
// putLine's fallback.
func (c *Client) appendLine(b []byte, name string, num []byte, member, typ string, tags []Tag, nt int, override bool) []byte {
	b = append(b, c.ns...)
	b = appendName(b, name, len(c.ns) == 0)
	b = append(b, ':')
	if num != nil {
		b = append(b, num...)
	} else {
		b = appendClean(b, member, classMember)
	}
	b = append(b, '|')
	b = append(b, typ...)
	if nt > 0 {
		b = append(b, '|', '#')
		b = c.appendTags(b, tags, override)
	}
	return append(b, '\n')
}

// tagsLen is the encoded length of the per-call and constant tags
// (without "|#"), how many there are, and whether a per-call tag replaces
// a constant one.
func (c *Client) tagsLen(tags []Tag) (n, count int, override bool) {
	for _, t := range tags {
		if t.Key == "" {
			continue
		}
		if count > 0 {
			n++
		}
		n += tagEncLen(t.Key, t.Value)
		count++
		if !override && c.isConst(t.Key) {
			override = true
		}
	}
	if !override {
		if len(c.consts) > 0 {
			if count > 0 {
				n++
			}
			n += len(c.constEnc)
			count += len(c.consts)
		}
		return n, count, false
	}
	for _, ct := range c.consts {
		if hasKey(tags, ct.key) {
			continue
		}
		if count > 0 {
			n++
		}
		n += tagEncLen(ct.key, ct.value)
		count++
	}
	return n, count, true
}

func (c *Client) isConst(key string) bool {
	if c.constLens&(1<<(len(key)&63)) == 0 {
		return false // no constant key has this length (mod 64)
	}
	for _, ct := range c.consts {
		if ct.key == key {
			return true
		}
	}
	return false
}

func hasKey(tags []Tag, key string) bool {
	for _, t := range tags {
		if t.Key == key {
			return true
		}
	}
	return false
}

func (c *Client) appendTags(b []byte, tags []Tag, override bool) []byte {
	first := true
	for _, t := range tags {
		if t.Key == "" {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendTagEnc(b, t.Key, t.Value)
	}
	if !override {
		if len(c.constEnc) > 0 {
			if !first {
				b = append(b, ',')
			}
			b = append(b, c.constEnc...)
		}
		return b
	}
	for _, ct := range c.consts {
		if hasKey(tags, ct.key) {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendTagEnc(b, ct.key, ct.value)
	}
	return b
}

// AlertType is the DogStatsD alert type of an event; les makes it the
// log record's level.
type AlertType string

// Alert types.
const (
	AlertInfo    AlertType = "info"
	AlertWarning AlertType = "warning"
	AlertError   AlertType = "error"
	AlertSuccess AlertType = "success"
)

// Event is a DogStatsD event; les turns it into a log record whose message
// is Text, level AlertType, and attributes title, priority,
// aggregation_key, source_type_name and the tags.
type Event struct {
	Title string // required
	Text  string
	// AlertType defaults to AlertInfo.
	AlertType AlertType
	// Priority is "normal" or "low" (omitted when empty).
	Priority       string
	AggregationKey string
	SourceType     string
	// Host, when set, is the record's les source (it wins over a
	// "source" tag).
	Host string
	Tags []Tag
}

// Event writes e as one DogStatsD event line,
// "_e{<title len>,<text len>}:<title>|<text>|t:<alert>…|#<tags>". In title
// and text a newline becomes the two bytes `\n` and invalid UTF-8 becomes
// U+FFFD ('|' is kept: the lengths delimit them); the other fields and the
// tags are sanitised like tag values. An empty title is dropped.
func (c *Client) Event(e Event) {
	p := c.metrics
	if e.Title == "" {
		p.reject()
		return
	}
	if e.AlertType == "" {
		e.AlertType = AlertInfo
	}
	tl, xl := eventTextLen(e.Title), eventTextLen(e.Text)
	n := len("_e{,}:|") + digits(tl) + digits(xl) + tl + xl + len("|t:") + len(e.AlertType) + 1
	for _, f := range [...]string{e.Priority, e.AggregationKey, e.SourceType, e.Host} {
		if f != "" {
			n += 3 + len(f)
		}
	}
	tagLen, nt, override := c.tagsLen(e.Tags)
	if nt > 0 {
		n += 2 + tagLen
	}
	if nt > MaxTags || n > p.max {
		p.reject()
		return
	}
	cur, full := p.begin(n, 1)
	if cur == nil {
		return
	}
	b := append(cur.b, "_e{"...)
	b = strconv.AppendInt(b, int64(tl), 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, int64(xl), 10)
	b = append(b, '}', ':')
	b = appendEventText(b, e.Title)
	b = append(b, '|')
	b = appendEventText(b, e.Text)
	b = appendField(b, 't', string(e.AlertType))
	b = appendField(b, 'p', e.Priority)
	b = appendField(b, 'k', e.AggregationKey)
	b = appendField(b, 's', e.SourceType)
	b = appendField(b, 'h', e.Host)
	if nt > 0 {
		b = append(b, '|', '#')
		b = c.appendTags(b, e.Tags, override)
	}
	cur.b = append(b, '\n')
	p.commit(cur, full, 1)
}

func appendField(b []byte, key byte, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, '|', key, ':')
	return appendClean(b, v, classField)
}
