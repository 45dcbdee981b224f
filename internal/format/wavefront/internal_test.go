package wavefront

import (
	"math/rand/v2"
	"strconv"
	"testing"
)

func TestParseSimpleFloatMatchesStrconv(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const alphabet = "0123456789.-"
	for range 200000 {
		b := make([]byte, 1+r.IntN(18))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		s := string(b)
		got, ok := parseSimpleFloat(s)
		if !ok {
			continue
		}
		want, err := strconv.ParseFloat(s, 64)
		if err != nil || got != want {
			t.Fatalf("parseSimpleFloat(%q) = %v, strconv: %v, %v", s, got, want, err)
		}
	}
}

func FuzzParseValue(f *testing.F) {
	for _, s := range []string{"1", "-0.5", "1e3", "123456789012345", ".5", "5.", "-", "0x1p3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, r := parseValue(s)
		want, err := strconv.ParseFloat(s, 64)
		if r == "" && (err != nil || got != want) {
			t.Fatalf("parseValue(%q) = %v, strconv %v %v", s, got, want, err)
		}
		if r == "" || r == ReasonNonFiniteValue {
			return
		}
		if err == nil {
			t.Fatalf("parseValue(%q) rejected %s, strconv accepts %v", s, r, want)
		}
	})
}

func TestCharClass(t *testing.T) {
	for c := range 256 {
		b := byte(c)
		name := b == ',' || b == '-' || b == '.' || b == '/' || (b >= '0' && b <= '9') || (b >= 'A' && b <= 'Z') || b == '_' || (b >= 'a' && b <= 'z')
		space := b == '\t' || b == '\n' || b == '\v' || b == '\f' || b == '\r' || (b >= 0x1c && b <= 0x1f) || b == ' '
		if validNameChar(b) != name || isSpace(b) != space || (charClass[b]&cWordEnd != 0) != (space || b == '=') {
			t.Errorf("charClass[%#x] = %b", b, charClass[b])
		}
	}
}

// TestWordEndFast holds wordEndFast to a byte loop over the token enders
// spelled out (whitespace as isSpace documents it, and '='), at every
// start of strings around the 8-byte steps made of bytes of every kind.
func TestWordEndFast(t *testing.T) {
	ends := func(c byte) bool {
		return c == '=' || c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f)
	}
	ref := func(s string, i int) int {
		for i < len(s) && !ends(s[i]) {
			i++
		}
		return i
	}
	alphabet := []byte("ab.9_\x00\x01\x08\x0e\x1b\x20\x21\x3c\x3d\x3e\x7f\x80\xa0\xff\t\n\v\f\r\x1c\x1d\x1e\x1f")
	r := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		b := make([]byte, r.IntN(40))
		for i := range b {
			if r.IntN(4) == 0 {
				b[i] = alphabet[r.IntN(len(alphabet))]
			} else {
				b[i] = 'a' + byte(r.IntN(26))
			}
		}
		s := string(b)
		for i := 0; i <= len(s); i++ {
			if got, want := wordEndFast(s, i), ref(s, i); got != want {
				t.Fatalf("wordEndFast(%q, %d) = %d, want %d", s, i, got, want)
			}
		}
	}
	for c := range 256 {
		for pos := range 8 {
			x := uint64(0x6161616161616161) &^ (0xff << (8 * pos)) // 'a's
			x |= uint64(c) << (8 * pos)
			want := uint64(0)
			if c < 0x21 || c == '=' {
				want = 0x80 << (8 * pos)
			}
			if got := wordEndCandidates(x); got != want {
				t.Fatalf("wordEndCandidates: byte %#x at %d: %#x, want %#x", c, pos, got, want)
			}
		}
	}
}
