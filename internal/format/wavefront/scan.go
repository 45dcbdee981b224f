package wavefront

import (
	"encoding/binary"
	"math/bits"
	"unsafe"
)

// Word-at-a-time scanning for the series cache's hit path (scanSeries): a
// metric name is mostly 15–40 bytes, so its end is found 8 bytes at a
// time instead of one table lookup a byte (TestWordEndFast holds it to
// wordEnd).

const (
	lo8   = 0x0101010101010101
	hi8   = 0x8080808080808080
	low7s = 0x7f7f7f7f7f7f7f7f
)

// wordEndCandidates sets the high bit of each byte of x that is below
// 0x21 or is '=', and no other bit: a superset of the bytes that end an
// unquoted token (cWordEnd: whitespace, all of it below 0x21, and '=').
// Per byte, with no carry between bytes: (x&0x7f)+0x5f has its high bit
// set exactly when the low 7 bits are ≥ 0x21; or-ing x adds the bytes
// ≥ 0x80. For y = x^'='…, (y&0x7f)+0x7f sets the high bit of each
// non-zero low-7 part; or-ing y adds those with the high bit: a byte is
// '=' where neither did.
func wordEndCandidates(x uint64) uint64 {
	lt := ^((x&low7s + lo8*(0x80-0x21)) | x)
	y := x ^ lo8*'='
	eq := ^((y&low7s + low7s) | y)
	return (lt | eq) & hi8
}

// wordEndFast is wordEnd(line, i): the end of the unquoted token at
// line[i:], 8 bytes at a time; a candidate byte that does not end a
// token (a control byte below 0x21 that is not whitespace) is passed.
func wordEndFast(line string, i int) int {
	b := unsafe.Slice(unsafe.StringData(line), len(line)) // only read
	for i+8 <= len(b) {
		for m := wordEndCandidates(binary.LittleEndian.Uint64(b[i:])); m != 0; m &= m - 1 {
			if j := i + bits.TrailingZeros64(m)>>3; charClass[b[j]]&cWordEnd != 0 {
				return j
			}
		}
		i += 8
	}
	return wordEnd(line, i)
}
