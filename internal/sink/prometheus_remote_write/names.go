package promrw

import (
	"strings"
	"unicode/utf8"
	"unsafe"
)

// Name rules (README.md, "Names"):
//   - metric names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names
//     [a-zA-Z_][a-zA-Z0-9_]*: every other character (a rune, or a byte of
//     invalid UTF-8) becomes '_', and a name starting with a digit gets a
//     '_' in front ("5xx" → "_5xx");
//   - label names starting with "__" are reserved for Prometheus: the
//     leading underscores of a tag key are cut to one ("__name__" →
//     "_name__");
//   - label values are UTF-8: invalid bytes become U+FFFD.

func isNameStart(c byte, colon bool) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || colon && c == ':'
}

func isNameChar(c byte, colon bool) bool {
	return isNameStart(c, colon) || c >= '0' && c <= '9'
}

// validName reports whether s is a valid metric name (colon true) or
// label name (colon false), without the reserved-prefix rule.
func validName(s string, colon bool) bool {
	if s == "" || !isNameStart(s[0], colon) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isNameChar(s[i], colon) {
			return false
		}
	}
	return true
}

// appendName appends s sanitised as a metric name (colon true) or label
// name to dst.
func appendName(dst []byte, s string, colon bool) []byte {
	if s == "" {
		return append(dst, '_')
	}
	if s[0] >= '0' && s[0] <= '9' {
		dst = append(dst, '_')
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if isNameChar(c, colon) {
				dst = append(dst, c)
			} else {
				dst = append(dst, '_')
			}
			i++
			continue
		}
		_, n := utf8.DecodeRuneInString(s[i:]) // n is 1 for an invalid byte
		dst = append(dst, '_')
		i += n
	}
	return dst
}

// arena holds the sanitised strings of one item. Strings returned by its
// methods alias it and are valid until reset; growing it never changes
// strings already returned (they keep the old array).
type arena struct{ b []byte }

func (a *arena) reset() { a.b = a.b[:0] }

func (a *arena) str(start int) string {
	if start == len(a.b) {
		return ""
	}
	return unsafe.String(&a.b[start], len(a.b)-start)
}

// metricName returns s as a valid metric name, s itself when it is one.
func (a *arena) metricName(s string) string {
	if validName(s, true) {
		return s
	}
	start := len(a.b)
	a.b = appendName(a.b, s, true)
	return a.str(start)
}

// suffixed returns name+suffix.
func (a *arena) suffixed(name, suffix string) string {
	start := len(a.b)
	a.b = append(append(a.b, name...), suffix...)
	return a.str(start)
}

// labelName returns key as a valid, unreserved label name.
func (a *arena) labelName(key string) string {
	if validName(key, false) && !strings.HasPrefix(key, "__") {
		return key
	}
	start := len(a.b)
	a.b = appendName(a.b, key, false)
	// cut a reserved "__" prefix to one underscore
	n := 0
	for start+n < len(a.b) && a.b[start+n] == '_' {
		n++
	}
	if n > 1 && start+n < len(a.b) {
		a.b = append(a.b[:start+1], a.b[start+n:]...)
	} else if n > 1 { // the key was only underscores
		a.b = a.b[:start+1]
	}
	return a.str(start)
}

// labelValue returns s as valid UTF-8.
func (a *arena) labelValue(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	start := len(a.b)
	a.b = append(a.b, strings.ToValidUTF8(s, "\uFFFD")...)
	return a.str(start)
}

// joined returns a + ";" + b (the values of two tags whose keys sanitise
// to the same label name).
func (a *arena) joined(x, y string) string {
	start := len(a.b)
	a.b = append(append(append(a.b, x...), ';'), y...)
	return a.str(start)
}
