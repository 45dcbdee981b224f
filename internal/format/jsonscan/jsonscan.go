// Package jsonscan is a small allocation-free JSON scanner shared by the
// logline, emf, lambda and cwlogs decoders and the filter-pattern matcher. It validates while it scans, never
// recurses deeper than MaxDepth and never panics on any input.
//
// Every []byte it returns is a sub-slice of the caller's input; Alias turns
// such a slice into a string that shares the input's memory, so the input
// must not be modified while those strings are in use.
package jsonscan

import (
	"encoding/binary"
	"math/bits"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// MaxDepth is the deepest nesting of arrays and objects accepted.
const MaxDepth = 64

// Kind is the type of a JSON value, decided by its first byte.
type Kind uint8

const (
	Invalid Kind = iota
	Object
	Array
	String
	Number
	Bool
	Null
)

// KindOf returns the kind of the value v (leading space is not allowed).
func KindOf(v []byte) Kind {
	if len(v) == 0 {
		return Invalid
	}
	switch c := v[0]; {
	case c == '{':
		return Object
	case c == '[':
		return Array
	case c == '"':
		return String
	case c == 't' || c == 'f':
		return Bool
	case c == 'n':
		return Null
	case c == '-' || (c >= '0' && c <= '9'):
		return Number
	}
	return Invalid
}

// Alias returns a string sharing b's memory (no copy). The caller must not
// modify b while the string is in use.
func Alias(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// SkipSpace returns the index of the first non-space byte at or after i.
func SkipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// Value scans one JSON value starting at b[i] (after optional space) and
// returns the value's bytes (without surrounding space) and the index just
// after it. ok is false if b[i:] does not start with a valid value.
func Value(b []byte, i int) (v []byte, next int, ok bool) {
	i = SkipSpace(b, i)
	end, ok := skip(b, i, 0)
	if !ok {
		return nil, i, false
	}
	return b[i:end], end, true
}

// Valid reports whether b is exactly one JSON value with optional space.
func Valid(b []byte) bool {
	_, next, ok := Value(b, 0)
	return ok && SkipSpace(b, next) == len(b)
}

func skip(b []byte, i, depth int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch c := b[i]; {
	case c == '"':
		_, _, next, ok := str(b, i)
		return next, ok
	case c == '{' || c == '[':
		if depth >= MaxDepth {
			return i, false
		}
		closing := c + 2 // '}' or ']'
		i = SkipSpace(b, i+1)
		if i < len(b) && b[i] == closing {
			return i + 1, true
		}
		for {
			if c == '{' {
				if i >= len(b) || b[i] != '"' {
					return i, false
				}
				_, _, next, ok := str(b, i)
				if !ok {
					return i, false
				}
				i = SkipSpace(b, next)
				if i >= len(b) || b[i] != ':' {
					return i, false
				}
				i = SkipSpace(b, i+1)
			}
			var ok bool
			i, ok = skip(b, i, depth+1)
			if !ok {
				return i, false
			}
			i = SkipSpace(b, i)
			if i >= len(b) {
				return i, false
			}
			if b[i] == closing {
				return i + 1, true
			}
			if b[i] != ',' {
				return i, false
			}
			i = SkipSpace(b, i+1)
		}
	case c == 't':
		return lit(b, i, "true")
	case c == 'f':
		return lit(b, i, "false")
	case c == 'n':
		return lit(b, i, "null")
	case c == '-' || (c >= '0' && c <= '9'):
		return number(b, i)
	}
	return i, false
}

// ScanLiteral reports whether b[i:] starts with s (such as "true", "false" or
// "null") and returns the index just after it.
func ScanLiteral(b []byte, i int, s string) (next int, ok bool) {
	return lit(b, i, s)
}

// ScanNumber scans the JSON number starting at b[i] and returns the index just
// after it; ok is false if b[i:] does not start with a valid number. The
// byte after the number is not checked.
func ScanNumber(b []byte, i int) (next int, ok bool) {
	return number(b, i)
}

// ScanString scans the JSON string starting at b[i] == '"' and validates it.
// raw is its body without the quotes (aliasing b); escaped reports whether
// raw contains backslash escapes (see Unescape); next is the index just after
// the closing quote.
func ScanString(b []byte, i int) (raw []byte, escaped bool, next int, ok bool) {
	if i < 0 || i >= len(b) || b[i] != '"' {
		return nil, false, i, false
	}
	return str(b, i)
}

func lit(b []byte, i int, s string) (int, bool) {
	if len(b)-i >= len(s) && string(b[i:i+len(s)]) == s {
		return i + len(s), true
	}
	return i, false
}

func number(b []byte, i int) (int, bool) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	if i >= len(b) {
		return i, false
	}
	if b[i] == '0' {
		i++
	} else if b[i] >= '1' && b[i] <= '9' {
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	} else {
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == start {
			return i, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == start {
			return i, false
		}
	}
	return i, true
}

// str scans the string starting at b[i]=='"'. raw excludes the quotes;
// escaped reports whether raw contains backslash escapes.
func str(b []byte, i int) (raw []byte, escaped bool, next int, ok bool) {
	start := i + 1
	for j := start; j < len(b); j++ {
		if j = nextSpecial(b, j); j >= len(b) {
			break
		}
		switch c := b[j]; {
		case c == '"':
			return b[start:j], escaped, j + 1, true
		case c == '\\':
			escaped = true
			j++
			if j >= len(b) {
				return nil, false, j, false
			}
			switch b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(b)-j < 5 || !isHex4(b[j+1:j+5]) {
					return nil, false, j, false
				}
				j += 4
			default:
				return nil, false, j, false
			}
		case c < 0x20:
			return nil, false, j, false
		}
	}
	return nil, false, len(b), false
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// nextSpecial returns the index of the first quote, backslash or control
// character at or after b[j], or len(b): the bytes str must look at. It tests
// 8 bytes at a time (SWAR): a byte is zero, or below n, exactly when
// subtracting ones (or n) from it borrows into its bit 7, and the lowest
// flagged byte is always a true hit because borrows only move upwards.
func nextSpecial(b []byte, j int) int {
	for len(b)-j >= 8 {
		x := binary.LittleEndian.Uint64(b[j:])
		q := x ^ (ones * '"')
		s := x ^ (ones * '\\')
		if m := ((q-ones)&^q | (s-ones)&^s | (x-ones*0x20)&^x) & highs; m != 0 {
			return j + bits.TrailingZeros64(m)>>3
		}
		j += 8
	}
	for j < len(b) && b[j] >= 0x20 && b[j] != '"' && b[j] != '\\' {
		j++
	}
	return j
}

func isHex4(h []byte) bool {
	for _, c := range h[:4] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// StringRaw returns the raw contents (between the quotes) of the JSON
// string value v and whether it contains escapes. ok is false if v is not
// exactly one valid string.
func StringRaw(v []byte) (raw []byte, escaped bool, ok bool) {
	if len(v) < 2 || v[0] != '"' {
		return nil, false, false
	}
	raw, escaped, next, ok := str(v, 0)
	if !ok || next != len(v) {
		return nil, false, false
	}
	return raw, escaped, true
}

// Str returns the Go string for the JSON string value v: an alias of v when
// it has no escapes (see Alias), otherwise a new unescaped string.
func Str(v []byte) (string, bool) {
	raw, escaped, ok := StringRaw(v)
	if !ok {
		return "", false
	}
	if !escaped {
		return Alias(raw), true
	}
	return string(Unescape(nil, raw)), true
}

// Bytes is like Str but returns bytes: raw aliases v when it has no escapes.
func Bytes(v []byte) ([]byte, bool) {
	raw, escaped, ok := StringRaw(v)
	if !ok {
		return nil, false
	}
	if !escaped {
		return raw, true
	}
	return Unescape(nil, raw), true
}

// Unescape appends the unescaped form of raw (a validated string body) to
// dst. Invalid surrogates become U+FFFD, as encoding/json does.
func Unescape(dst, raw []byte) []byte {
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' || i+1 >= len(raw) {
			dst = append(dst, c)
			continue
		}
		i++
		switch raw[i] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, n := hexRune(raw[i+1:])
			i += n
			if utf16.IsSurrogate(r) {
				r2, n2 := rune(-1), 0
				if len(raw)-i > 2 && raw[i+1] == '\\' && raw[i+2] == 'u' {
					r2, n2 = hexRune(raw[i+3:])
				}
				if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
					r = d
					i += 2 + n2
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
		default: // '"', '\\', '/'
			dst = append(dst, raw[i])
		}
	}
	return dst
}

func hexRune(h []byte) (rune, int) {
	if len(h) < 4 || !isHex4(h) {
		return utf8.RuneError, 0
	}
	var r rune
	for _, c := range h[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		default:
			c = c - 'A' + 10
		}
		r = r<<4 | rune(c)
	}
	return r, 4
}

// Float parses the JSON number value v.
func Float(v []byte) (float64, bool) {
	if KindOf(v) != Number {
		return 0, false
	}
	if end, ok := number(v, 0); !ok || end != len(v) {
		return 0, false
	}
	f, err := strconv.ParseFloat(Alias(v), 64)
	if err != nil {
		return 0, false
	}
	return f, true
}

// Int parses the JSON number v as an integer; it accepts a fraction or
// exponent only if the value is integral and fits in int64.
func Int(v []byte) (int64, bool) {
	if KindOf(v) != Number {
		return 0, false
	}
	if n, err := strconv.ParseInt(Alias(v), 10, 64); err == nil {
		return n, true
	}
	f, ok := Float(v)
	if !ok || f != float64(int64(f)) || f > 9.2e18 || f < -9.2e18 {
		return 0, false
	}
	return int64(f), true
}

// container is the position of an iteration over an object or array.
type container struct {
	b       []byte
	i       int // index after the opening bracket or the last item
	started bool
	done    bool
	err     bool
}

func open(v []byte, bracket byte) container {
	c := container{b: v, i: 1}
	if len(v) == 0 || v[0] != bracket {
		c.done, c.err = true, true
	}
	return c
}

// item returns the index of the next item, after the separating comma if
// one is due, or false at the closing bracket (where anything but trailing
// space is an error) and on malformed input.
func (c *container) item(closing byte) (int, bool) {
	if c.done {
		return 0, false
	}
	b := c.b
	i := SkipSpace(b, c.i)
	if i < len(b) && b[i] == closing {
		c.done = true
		c.err = SkipSpace(b, i+1) != len(b)
		return 0, false
	}
	if c.started {
		if i >= len(b) || b[i] != ',' {
			return 0, c.fail()
		}
		i = SkipSpace(b, i+1)
	}
	c.started = true
	return i, true
}

func (c *container) fail() bool {
	c.done, c.err = true, true
	return false
}

// MemberIter iterates over the members of a JSON object:
//
//	it := jsonscan.Members(v)
//	for it.Next() { use(it.Key, it.Val) }
//	if it.Err() { ... }
//
// Key is the raw key (KeyEscaped says whether it has escapes) and Val the
// member's value bytes; both alias v.
type MemberIter struct {
	c          container
	Key        []byte
	KeyEscaped bool
	Val        []byte
}

// Members returns an iterator over the object v. If v is not an object the
// first Next returns false and Err reports true.
func Members(v []byte) MemberIter {
	return MemberIter{c: open(v, '{')}
}

// Next advances to the next member.
func (it *MemberIter) Next() bool {
	i, ok := it.c.item('}')
	if !ok {
		return false
	}
	b := it.c.b
	if i >= len(b) || b[i] != '"' {
		return it.c.fail()
	}
	key, esc, next, ok := str(b, i)
	if !ok {
		return it.c.fail()
	}
	i = SkipSpace(b, next)
	if i >= len(b) || b[i] != ':' {
		return it.c.fail()
	}
	i = SkipSpace(b, i+1)
	end, ok := skip(b, i, 1)
	if !ok {
		return it.c.fail()
	}
	it.Key, it.KeyEscaped, it.Val, it.c.i = key, esc, b[i:end], end
	return true
}

// Err reports whether the object was malformed.
func (it *MemberIter) Err() bool { return it.c.err }

// KeyIs reports whether the current key equals s (escaped keys are
// compared after unescaping, which allocates).
func (it *MemberIter) KeyIs(s string) bool {
	if !it.KeyEscaped {
		return string(it.Key) == s
	}
	return string(Unescape(nil, it.Key)) == s
}

// KeyString returns the current key as a string aliasing the input, or a
// new string if it had escapes.
func (it *MemberIter) KeyString() string {
	if !it.KeyEscaped {
		return Alias(it.Key)
	}
	return string(Unescape(nil, it.Key))
}

// ElemIter iterates over the elements of a JSON array; Val aliases the input.
type ElemIter struct {
	c   container
	Val []byte
}

// Elems returns an iterator over the array v.
func Elems(v []byte) ElemIter {
	return ElemIter{c: open(v, '[')}
}

// Next advances to the next element.
func (it *ElemIter) Next() bool {
	i, ok := it.c.item(']')
	if !ok {
		return false
	}
	end, ok := skip(it.c.b, i, 1)
	if !ok {
		return it.c.fail()
	}
	it.Val, it.c.i = it.c.b[i:end], end
	return true
}

// Err reports whether the array was malformed.
func (it *ElemIter) Err() bool { return it.c.err }

// UnescapeInPlace unescapes the validated string body raw over itself and
// returns the shortened slice. Unescaping never grows a string, so the
// caller's bytes after the returned slice (up to len(raw)) are left stale;
// use it only on a buffer the caller owns and has finished scanning.
func UnescapeInPlace(raw []byte) []byte {
	return Unescape(raw[:0], raw)
}
