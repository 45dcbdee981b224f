package client

import (
	"math"
	"strconv"
	"unicode/utf8"
)

// Byte classes replaced by '_' in names, tag keys, tag values, set members
// and event fields: control bytes and DEL always, and every byte of
// invalid UTF-8. The replacement keeps the length, so a line's length is
// known before it is encoded.
const (
	// Names and tag keys: ':' ends a name or a tag key, '|' a section,
	// ',' a tag (and starts Telegraf-style tags in a name).
	className = 1
	// Tag values: ':' is kept (only the first ':' of a tag separates key
	// and value).
	classValue = 2
	// Set members: ':' separates packed values.
	classMember = 4
	// Event fields after the text (h:, k:, s:, t:, p:).
	classField = 8
	// JSON strings: escaped, not replaced ('"', '\\', control bytes).
	classJSON = 0x10
	// Bytes ≥ 0x80: checked as UTF-8.
	classNonASCII = 0x80
)

// byteClass[c] has the bit of every class in which c is replaced, and
// classNonASCII for c ≥ 0x80 (generated: control bytes and DEL in every
// class; ':' '|' ',' in names; '|' ',' in values; '|' ':' in members; '|'
// in fields; control bytes, '"' and '\\' in JSON).
const byteClass = "" +
	"\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f" +
	"\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f" +
	"\x00\x00\x10\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x0f\x00\x00\x0f" +
	"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80" +
	"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80" +
	"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80" +
	"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80" +
	"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80" +
	"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80" +
	"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80" +
	"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80"

// appendClean appends s with the bytes of class and invalid UTF-8 replaced
// by '_'; it appends exactly len(s) bytes. The common case, a clean ASCII
// string, is one copy and one pass that ORs the table entries of its
// bytes, without a branch per byte.
func appendClean(b []byte, s string, class byte) []byte {
	b = append(b, s...)
	if !clean(s, class) {
		sanitize(b[len(b)-len(s):], class)
	}
	return b
}

// clean reports whether s is ASCII without a byte of class.
func clean(s string, class byte) bool {
	var acc byte
	for i := 0; i < len(s); i++ {
		acc |= byteClass[s[i]]
	}
	return acc&(class|classNonASCII) == 0
}

// sanitize replaces, in place, the bytes of class and every byte of
// invalid UTF-8 in d by '_'.
func sanitize(d []byte, class byte) {
	ascii := true
	mask := class | classNonASCII
	for i := 0; i < len(d); i++ {
		if t := byteClass[d[i]]; t&mask != 0 {
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
}

// appendName appends a metric name. atStart says whether it begins the
// line, where "_e{" would start an event: its '{' becomes '_'.
func appendName(b []byte, s string, atStart bool) []byte {
	start := len(b)
	b = appendClean(b, s, className)
	if atStart && len(s) >= 3 && s[0] == '_' && s[1] == 'e' && s[2] == '{' {
		b[start+2] = '_'
	}
	return b
}

func appendTagEnc(b []byte, key, value string) []byte {
	b = appendClean(b, key, className)
	if value != "" {
		b = append(b, ':')
		b = appendClean(b, value, classValue)
	}
	return b
}

func tagEncLen(key, value string) int {
	if value == "" {
		return len(key)
	}
	return len(key) + 1 + len(value)
}

// appendValue formats a finite v as the shortest decimal that parses back
// to v: integers without a fraction, 'e' notation only for very large or
// small magnitudes. It never writes a leading '+'.
func appendValue(b []byte, v float64) []byte {
	a := math.Abs(v)
	switch {
	case v == math.Trunc(v) && a < 1e15:
		return strconv.AppendInt(b, int64(v), 10) // -0 is "0"
	case a < 1e9:
		if b, ok := appendFixed(b, v); ok {
			return b
		}
	}
	if a < 1e-6 || a >= 1e21 {
		return strconv.AppendFloat(b, v, 'g', -1, 64)
	}
	return strconv.AppendFloat(b, v, 'f', -1, 64)
}

// appendFixed writes v (|v| < 1e9) with the fewest decimals, up to 6,
// that give v back, and reports false when 6 are not enough. m = v·10^k
// is an integer below 2^53 and 10^k is exact, so the IEEE division m/10^k
// is the correctly rounded value of the decimal m·10^-k: the same double
// strconv.ParseFloat returns for the text written here. The digits are
// written backwards into a small array (division by the constant 10 is a
// multiplication), trailing zeros dropped.
func appendFixed(b []byte, v float64) ([]byte, bool) {
	p := 1.0
	for k := 1; k <= 6; k++ {
		p *= 10
		m := v * p
		if m != math.Trunc(m) || m/p != v {
			continue
		}
		neg := m < 0
		if neg {
			m = -m
		}
		var d [24]byte // "-" + 9 integer digits + "." + 6 decimals fit
		mi := uint64(m)
		end, i := len(d), len(d)
		for range k {
			i--
			d[i] = byte('0' + mi%10)
			mi /= 10
		}
		for end > i && d[end-1] == '0' {
			end--
		}
		i--
		d[i] = '.'
		for {
			i--
			d[i] = byte('0' + mi%10)
			mi /= 10
			if mi == 0 {
				break
			}
		}
		if neg {
			i--
			d[i] = '-'
		}
		for _, c := range d[i:end] { // no call to memmove for a few bytes
			b = append(b, c)
		}
		return b, true
	}
	return b, false
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func digits(n int) int {
	d := 1
	for n >= 10 {
		n /= 10
		d++
	}
	return d
}

// Event title and text: a newline becomes the two bytes `\n` (as
// datadog-go writes it, and the Datadog agent reads it back), invalid
// UTF-8 becomes U+FFFD. '|' is kept: the lengths in the header delimit
// title and text.
const replacement = "\uFFFD"

func eventTextLen(s string) int {
	n := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			n++
			if c == '\n' {
				n++
			}
			i++
			continue
		}
		_, size := utf8.DecodeRuneInString(s[i:])
		if size == 1 {
			n += len(replacement)
		} else {
			n += size
		}
		i += size
	}
	return n
}

func appendEventText(b []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c == '\n' {
				b = append(b, '\\', 'n')
			} else {
				b = append(b, c)
			}
			i++
			continue
		}
		_, size := utf8.DecodeRuneInString(s[i:])
		if size == 1 {
			b = append(b, replacement...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return b
}

// JSON strings: '"', '\\' and control bytes are escaped, invalid UTF-8
// becomes \ufffd.
const hexDigits = "0123456789abcdef"

// jsonRune returns the escaped length of the rune or byte at s[i] and how
// many input bytes it takes.
func jsonRune(s string, i int) (out, in int) {
	c := s[i]
	if c < utf8.RuneSelf {
		switch {
		case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t':
			return 2, 1
		case c < 0x20:
			return 6, 1
		}
		return 1, 1
	}
	_, size := utf8.DecodeRuneInString(s[i:])
	if size == 1 {
		return 6, 1 // \ufffd
	}
	return size, size
}

func jsonLen(s string) int {
	n := len(s)
	for i := 0; i < len(s); i++ {
		t := byteClass[s[i]]
		if t&(classJSON|classNonASCII) == 0 {
			continue
		}
		if t&classNonASCII != 0 {
			_, size := utf8.DecodeRuneInString(s[i:])
			if size == 1 {
				n += len(`\ufffd`) - 1
			}
			i += size - 1
			continue
		}
		switch s[i] {
		case '"', '\\', '\n', '\r', '\t':
			n++
		default:
			n += len(`\u0000`) - 1
		}
	}
	return n
}

// appendJSON appends the escaped contents of s (no quotes), at most budget
// bytes of it, never cutting an escape or a rune. It reports whether s was
// cut.
func appendJSON(b []byte, s string, budget int) ([]byte, bool) {
	for i := 0; i < len(s); {
		o, in := jsonRune(s, i)
		if o > budget {
			return b, true
		}
		budget -= o
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		case c < utf8.RuneSelf:
			b = append(b, c)
		case o == 6: // invalid UTF-8
			b = append(b, `\ufffd`...)
		default:
			b = append(b, s[i:i+in]...)
		}
		i += in
	}
	return b, false
}

// appendJSONString appends s as a quoted JSON string: clean runs are
// copied whole, and each byte that needs it is escaped (jsonLen(s)+2
// bytes).
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		t := byteClass[s[i]]
		if t&(classJSON|classNonASCII) == 0 {
			i++
			continue
		}
		if t&classNonASCII != 0 {
			_, size := utf8.DecodeRuneInString(s[i:])
			if size > 1 {
				i += size
				continue
			}
		}
		b = append(b, s[start:i]...)
		b, _ = appendJSON(b, s[i:i+1], 6)
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
