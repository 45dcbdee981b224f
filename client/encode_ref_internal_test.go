package client

import (
	"math"
	"strconv"
	"unicode/utf8"
)

// The encoder as it was before the fast paths (2026-12-01), frozen as the
// reference for TestEncodeMatchesReference: the new code must write the
// same bytes for every input.

func refAppendClean(b []byte, s string, class byte) []byte {
	start := len(b)
	b = append(b, s...)
	d := b[start:]
	d = d[:len(s)]
	ascii := true
	mask := class | classNonASCII
	for i := 0; i < len(s); i++ {
		if t := byteClass[s[i]]; t&mask != 0 {
			if t&classNonASCII != 0 {
				ascii = false
			} else {
				d[i] = '_'
			}
		}
	}
	if !ascii && !utf8.Valid(d) {
		for i := 0; i < len(d); {
			if d[i] < utf8.RuneSelf {
				i++
				continue
			}
			_, size := utf8.DecodeRune(d[i:])
			if size == 1 { // invalid UTF-8 (a valid rune ≥ 0x80 takes 2+ bytes)
				d[i] = '_'
			}
			i += size
		}
	}
	return b
}

func refAppendName(b []byte, s string, atStart bool) []byte {
	start := len(b)
	b = refAppendClean(b, s, className)
	if atStart && len(s) >= 3 && s[0] == '_' && s[1] == 'e' && s[2] == '{' {
		b[start+2] = '_'
	}
	return b
}

func refAppendTagEnc(b []byte, key, value string) []byte {
	b = refAppendClean(b, key, className)
	if value != "" {
		b = append(b, ':')
		b = refAppendClean(b, value, classValue)
	}
	return b
}

func refAppendValue(b []byte, v float64) []byte {
	a := math.Abs(v)
	switch {
	case v == math.Trunc(v) && a < 1e15:
		return strconv.AppendInt(b, int64(v), 10) // -0 is "0"
	case a < 1e9:
		if b, ok := refAppendFixed(b, v); ok {
			return b
		}
	}
	if a < 1e-6 || a >= 1e21 {
		return strconv.AppendFloat(b, v, 'g', -1, 64)
	}
	return strconv.AppendFloat(b, v, 'f', -1, 64)
}

func refAppendFixed(b []byte, v float64) ([]byte, bool) {
	p := 1.0
	for k := 1; k <= 6; k++ {
		p *= 10
		m := v * p
		if m != math.Trunc(m) || m/p != v {
			continue
		}
		if m < 0 {
			b = append(b, '-')
			m = -m
		}
		mi, pi := int64(m), int64(p)
		b = strconv.AppendInt(b, mi/pi, 10)
		b = append(b, '.')
		frac := mi % pi
		for d := pi / 10; d > 0; d /= 10 {
			b = append(b, byte('0'+frac/d%10))
		}
		for b[len(b)-1] == '0' {
			b = b[:len(b)-1]
		}
		return b, true
	}
	return b, false
}

func (c *Client) refAppendLine(b []byte, name string, num []byte, member, typ string, tags []Tag, nt int, override bool) []byte {
	b = append(b, c.ns...)
	b = refAppendName(b, name, len(c.ns) == 0)
	b = append(b, ':')
	if num != nil {
		b = append(b, num...)
	} else {
		b = refAppendClean(b, member, classMember)
	}
	b = append(b, '|')
	b = append(b, typ...)
	if nt > 0 {
		b = append(b, '|', '#')
		b = c.refAppendTags(b, tags, override)
	}
	return append(b, '\n')
}

func (c *Client) refTagsLen(tags []Tag) (n, count int, override bool) {
	for _, t := range tags {
		if t.Key == "" {
			continue
		}
		if count > 0 {
			n++
		}
		n += tagEncLen(t.Key, t.Value)
		count++
		if !override && c.refIsConst(t.Key) {
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

func (c *Client) refAppendTags(b []byte, tags []Tag, override bool) []byte {
	first := true
	for _, t := range tags {
		if t.Key == "" {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = refAppendTagEnc(b, t.Key, t.Value)
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
		b = refAppendTagEnc(b, ct.key, ct.value)
	}
	return b
}

func (c *Client) refIsConst(key string) bool {
	for _, ct := range c.consts {
		if ct.key == key {
			return true
		}
	}
	return false
}

// refMetric is the line (two with zeroFirst) metric wrote before, or nil
// when it refused the call; max is the datagram size.
func (c *Client) refMetric(name string, num []byte, member, typ string, tags []Tag, zeroFirst bool, max int) []byte {
	if name == "" {
		return nil
	}
	tl, nt, override := c.refTagsLen(tags)
	vl := len(num)
	if num == nil {
		vl = len(member)
	}
	line := len(c.ns) + len(name) + 1 + vl + 1 + len(typ) + 1
	if nt > 0 {
		line += 2 + tl
	}
	n := line
	if zeroFirst {
		n += line - vl + 1
	}
	if nt > MaxTags || n > max {
		return nil
	}
	var b []byte
	if zeroFirst {
		b = c.refAppendLine(b, name, []byte{'0'}, "", typ, tags, nt, override)
	}
	return c.refAppendLine(b, name, num, member, typ, tags, nt, override)
}
