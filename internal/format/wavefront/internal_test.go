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
