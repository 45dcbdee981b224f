package statsd

import (
	"encoding/binary"
	"math/bits"
)

// Word-at-a-time scanning. A line's delimiters are ASCII, and a metric
// line's fields are mostly shorter than the call of one bytes.IndexByte
// per delimiter, so the hot loops read 8 bytes at once and walk the set
// bits of a mask of the delimiters found (TestScan holds these helpers to
// byte loops).

// isASCII reports whether b has no byte above 0x7f.
func isASCII(b []byte) bool {
	var acc uint64
	for len(b) >= 32 { // four loads a turn, independent of each other
		acc |= binary.LittleEndian.Uint64(b) | binary.LittleEndian.Uint64(b[8:]) |
			binary.LittleEndian.Uint64(b[16:]) | binary.LittleEndian.Uint64(b[24:])
		b = b[32:]
	}
	for len(b) >= 8 {
		acc |= binary.LittleEndian.Uint64(b)
		b = b[8:]
	}
	for _, c := range b {
		acc |= uint64(c)
	}
	return acc&0x8080808080808080 == 0
}

// word returns the 8 bytes of b from i (0 <= i < len(b)) as a
// little-endian uint64, byte i lowest; bytes past the end of b read as 0,
// which is never a delimiter.
func word(b []byte, i int) uint64 {
	if i+8 <= len(b) {
		return binary.LittleEndian.Uint64(b[i:])
	}
	if len(b) >= 8 {
		// The last 8 bytes, shifted down so that byte i comes first.
		return binary.LittleEndian.Uint64(b[len(b)-8:]) >> (8 * (i + 8 - len(b)))
	}
	var x uint64
	for j := len(b) - 1; j >= i; j-- {
		x = x<<8 | uint64(b[j])
	}
	return x
}

// delims sets the high bit of each byte of x that is ',', '|' or sep, and
// no other bit. For y = x^(c*0x0101…), (y&0x7f…)+0x7f… sets the high bit of
// each byte whose low 7 bits are not all zero, without a carry into the
// next byte; or-ing y adds the bytes whose high bit is set. A byte of x is
// c exactly where neither did.
func delims(x uint64, sep byte) uint64 {
	const lo, low7 = 0x0101010101010101, 0x7f7f7f7f7f7f7f7f
	nonzero := func(y uint64) uint64 { return (y&low7 + low7) | y }
	return ^(nonzero(x^(lo*','))&nonzero(x^(lo*'|'))&nonzero(x^(lo*uint64(sep))) | low7)
}

// keyPrefix is the first min(n, 8) bytes of b[start:start+n] as a
// big-endian number, zero padded: for two strings whose prefixes differ,
// the prefixes are ordered as the strings are (a shorter string's padding
// sorts before any byte, as the end of a string does).
func keyPrefix(b []byte, start, n int) uint64 {
	x := word(b, start)
	if n < 8 {
		x &= 1<<(8*n) - 1
	}
	return bits.ReverseBytes64(x)
}
