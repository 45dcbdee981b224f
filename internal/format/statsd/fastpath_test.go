package statsd

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/les-streams/les/internal/model"
)

// Each fast path of the decoder against the general path it stands for.

// checkParseFloat fails t unless parseFloat(s) is strconv.ParseFloat(s):
// the same bits, the same error or none, the same ErrRange.
func checkParseFloat(t *testing.T, s string) {
	t.Helper()
	want, werr := strconv.ParseFloat(s, 64)
	got, gerr := parseFloat([]byte(s))
	if math.Float64bits(got) != math.Float64bits(want) || (gerr == nil) != (werr == nil) ||
		errors.Is(gerr, strconv.ErrRange) != errors.Is(werr, strconv.ErrRange) {
		t.Fatalf("parseFloat(%q) = %v, %v; strconv.ParseFloat: %v, %v", s, got, gerr, want, werr)
	}
}

func TestParseDecimal(t *testing.T) {
	fast := []string{"0", "-0", "+0", "1", "-3", "+3", "42", "2.5", "-0.25", "0.1", "20.25", "123.456", "00012",
		"999999999999999", "-999999999999999", "0.00000000000001", "99999999.9999999", "4503599627370497", "0.30000000000001"}
	slow := []string{"", "+", "-", ".", ".5", "5.", "-.5", "1e3", "1E-3", "Inf", "NaN", "0x1p3", "1_000", "1.2.3", "--1",
		"9999999999999999", "12345678901234567890", "0.000000000000001", "1.7976931348623157e308", "1e400", "é", "1 "}
	for _, s := range fast {
		if _, ok := parseDecimal([]byte(s)); !ok && len(strings.Trim(s, "+-.")) <= 15 {
			t.Errorf("parseDecimal(%q) left a plain decimal to strconv", s)
		}
		checkParseFloat(t, s)
	}
	for _, s := range slow {
		if _, ok := parseDecimal([]byte(s)); ok {
			t.Errorf("parseDecimal(%q) took the fast path", s)
		}
		checkParseFloat(t, s)
	}
	// Random decimals of 1 to 17 digits with the point anywhere: the
	// fast path's whole domain and its edges.
	rng := rand.New(rand.NewPCG(1, 1))
	for range 200_000 {
		n := 1 + rng.IntN(17)
		var b strings.Builder
		if rng.IntN(3) == 0 {
			b.WriteByte("+-"[rng.IntN(2)])
		}
		point := rng.IntN(n + 1)
		for i := range n {
			if i == point && i > 0 {
				b.WriteByte('.')
			}
			b.WriteByte(byte('0' + rng.IntN(10)))
		}
		checkParseFloat(t, b.String())
	}
}

func FuzzParseDecimal(f *testing.F) {
	for _, s := range []string{"1", "-2.5", "999999999999999", "0.1", "1e5", ".5", "5.", "+0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkParseFloat(t, s) })
}

// refSortUnique is model.SortTags followed by dropping all but the first
// tag of each key.
func refSortUnique(t model.Tags) model.Tags {
	t = slices.Clone(t)
	model.SortTags(t)
	return slices.CompactFunc(t, func(a, b model.Tag) bool { return a.Key == b.Key })
}

func TestSortUnique(t *testing.T) {
	// Keys that differ in the first byte, later, only past 8 bytes, only
	// in length, and by a NUL byte where a shorter key's padding is.
	keys := []string{"a", "b", "ab", "ab\x00", "ab\x00c", "abc", "region", "route", "runtime", "abcdefgh", "abcdefgh1",
		"abcdefgh2", "abcdefghij", "z", "\xff", "env", "A"}
	values := []string{"", "1", "2", "x"}
	rng := rand.New(rand.NewPCG(2, 2))
	for range 50_000 {
		tags := make(model.Tags, 1+rng.IntN(10))
		for i := range tags {
			tags[i] = model.Tag{Key: keys[rng.IntN(len(keys))], Value: values[rng.IntN(len(values))]}
		}
		if rng.IntN(4) == 0 {
			model.SortTags(tags) // sorted input, maybe with repeated keys
		}
		want := refSortUnique(tags)

		plain := slices.Clone(tags)
		if n := sortUnique(plain); !slices.Equal(plain[:n], want) {
			t.Fatalf("sortUnique(%q) = %q, want %q", tags, plain[:n], want)
		}
		prefixed := slices.Clone(tags)
		pre := make([]uint64, len(tags))
		for i, tg := range tags {
			// The key at the start of a longer buffer, or alone in it.
			b := []byte(tg.Key + ":" + tg.Value)
			if rng.IntN(2) == 0 {
				b = []byte(tg.Key)
			}
			pre[i] = keyPrefix(b, 0, len(tg.Key))
		}
		if n := sortUniquePrefixed(prefixed, pre); !slices.Equal(prefixed[:n], want) {
			t.Fatalf("sortUniquePrefixed(%q) = %q, want %q", tags, prefixed[:n], want)
		}
	}
}

func TestKeyPrefixOrder(t *testing.T) {
	alphabet := []byte{0, 1, 'a', 'b', 0x7f, 0x80, 0xff}
	rng := rand.New(rand.NewPCG(3, 3))
	str := func() string {
		b := make([]byte, 1+rng.IntN(11))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	for range 100_000 {
		a, b := str(), str()
		pa, pb := keyPrefix([]byte(a), 0, len(a)), keyPrefix([]byte(b+"|tail"), 0, len(b))
		if pa != pb && (pa < pb) != (a < b) {
			t.Fatalf("keyPrefix orders %q, %q as %x, %x", a, b, pa, pb)
		}
		if c := compareKeys(a, b); (c < 0) != (a < b) || (c == 0) != (a == b) {
			t.Fatalf("compareKeys(%q, %q) = %d", a, b, c)
		}
	}
}

func TestScan(t *testing.T) {
	// isASCII against a byte loop: every length to 80, one high byte at
	// each place.
	for n := range 80 {
		b := []byte(strings.Repeat("a", n))
		if !isASCII(b) {
			t.Fatalf("isASCII(%d ASCII bytes) = false", n)
		}
		for i := range n {
			b[i] = 0x80
			if isASCII(b) {
				t.Fatalf("isASCII missed byte %d of %d", i, n)
			}
			b[i] = 'a'
		}
	}
	// word against assembling the bytes: every length to 20, every start.
	buf := []byte("0123456789abcdefghij")
	for n := range len(buf) + 1 {
		b := buf[:n]
		for i := range n {
			var pad [8]byte
			copy(pad[:], b[i:])
			if got, want := word(b, i), binary.LittleEndian.Uint64(pad[:]); got != want {
				t.Fatalf("word(%q, %d) = %x, want %x", b, i, got, want)
			}
		}
	}
	// delims against a byte loop: every byte value at every place, the
	// other places random, for both separators.
	rng := rand.New(rand.NewPCG(4, 4))
	for _, sep := range []byte{':', '='} {
		for c := range 256 {
			for pos := range 8 {
				var w [8]byte
				for i := range w {
					w[i] = []byte{',', '|', ':', '=', 'a', 0, 0x80, 0xac, 0xbc, 0xfc, '+', '-', ';', '<', '}'}[rng.IntN(15)]
				}
				w[pos] = byte(c)
				var want uint64
				for i, x := range w {
					if x == ',' || x == '|' || x == sep {
						want |= 0x80 << (8 * i)
					}
				}
				if got := delims(binary.LittleEndian.Uint64(w[:]), sep); got != want {
					t.Fatalf("delims(%q, %q) = %x, want %x", w, sep, got, want)
				}
			}
		}
	}
}
