package pattern

import (
	"bytes"
	"math"
	"regexp"
	"strconv"
	"strings"
	"unsafe"
)

type cmpOp uint8

const (
	opEq cmpOp = iota
	opNe
	opLt
	opLe
	opGt
	opGe
)

type valueKind uint8

const (
	vkAny   valueKind = iota // `*`: any value
	vkNum                    // numeric literal
	vkStr                    // string, with optional leading/trailing `*`
	vkRegex                  // %regex%
)

// valueCond is the right-hand side of a comparison.
type valueCond struct {
	op          cmpOp
	kind        valueKind
	num         float64
	lit         []byte
	lead, trail bool // `*` before / after lit
	re          *regexp.Regexp
}

// matchText tests a value given as text (a delimited field, a JSON string's
// content or a JSON scalar's literal text).
func (c *valueCond) matchText(v []byte) bool {
	var eq bool
	switch c.kind {
	case vkAny:
		eq = true
	case vkRegex:
		eq = c.re.Match(v)
	case vkStr:
		switch {
		case c.lead && c.trail:
			eq = bytes.Contains(v, c.lit)
		case c.lead:
			eq = bytes.HasSuffix(v, c.lit)
		case c.trail:
			eq = bytes.HasPrefix(v, c.lit)
		default:
			eq = bytes.Equal(v, c.lit)
		}
	case vkNum:
		f, ok := parseNumber(v)
		if !ok {
			// A non-number is never equal to, less or greater than a number.
			return c.op == opNe
		}
		switch c.op {
		case opEq:
			return f == c.num
		case opNe:
			return f != c.num
		case opLt:
			return f < c.num
		case opLe:
			return f <= c.num
		case opGt:
			return f > c.num
		case opGe:
			return f >= c.num
		}
	}
	if c.op == opNe {
		return !eq
	}
	return eq
}

// isNumber reports whether b is a decimal number: optional sign, digits with
// an optional fraction, optional exponent.
func isNumber(b []byte) bool {
	i := 0
	if i < len(b) && (b[i] == '+' || b[i] == '-') {
		i++
	}
	digits := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
		digits++
	}
	if i < len(b) && b[i] == '.' {
		i++
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			digits++
		}
	}
	if digits == 0 {
		return false
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		ed := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			ed++
		}
		if ed == 0 {
			return false
		}
	}
	return i == len(b)
}

// parseNumber parses a decimal number without allocating; ok is false for
// anything else, including values out of float64 range.
func parseNumber(b []byte) (float64, bool) {
	if !isNumber(b) {
		return 0, false
	}
	// Fast path: short integers.
	if len(b) <= 15 {
		neg := false
		i := 0
		if b[0] == '-' || b[0] == '+' {
			neg = b[0] == '-'
			i++
		}
		var n int64
		for ; i < len(b); i++ {
			c := b[i]
			if c < '0' || c > '9' {
				n = -1
				break
			}
			n = n*10 + int64(c-'0')
		}
		if n >= 0 {
			f := float64(n)
			if neg {
				f = -f
			}
			return f, true
		}
	}
	// The string does not escape: ParseFloat clones it into any error.
	f, err := strconv.ParseFloat(unsafe.String(&b[0], len(b)), 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// newStrCond builds a string condition from literal text with CloudWatch's
// wildcard rule: `*` at the start and/or end is a wildcard, `*` elsewhere
// is literal, `*` alone matches any value.
func newStrCond(op cmpOp, s string) valueCond {
	if s != "" && strings.Trim(s, "*") == "" {
		return valueCond{op: op, kind: vkAny}
	}
	c := valueCond{op: op, kind: vkStr}
	if strings.HasPrefix(s, "*") {
		c.lead = true
		s = s[1:]
	}
	if strings.HasSuffix(s, "*") {
		c.trail = true
		s = s[:len(s)-1]
	}
	c.lit = []byte(s)
	return c
}
