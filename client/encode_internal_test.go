package client

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

// TestAppendValue: every value written parses back to itself (strconv is
// the oracle), without '+' and without more digits than strconv's
// shortest form.
func TestAppendValue(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	vals := []float64{0, math.Copysign(0, -1), 1, -1, 0.1, 0.2, 0.3, 12.25, 42.5, -5.75, 1e-7, 1e-6, 999999999.999999,
		1e9, 1e15, 1e21, 1e22, 123456.789, 0.000001, 0.0000015, math.MaxFloat64, -math.MaxFloat64, math.SmallestNonzeroFloat64,
		1.0000000000000002, 0.30000000000000004, 100.5, 2.675}
	for range 200000 {
		switch r.IntN(4) {
		case 0:
			vals = append(vals, r.NormFloat64()*math.Pow(10, float64(r.IntN(30)-10)))
		case 1:
			vals = append(vals, float64(r.IntN(2_000_000)-1_000_000)/math.Pow(10, float64(r.IntN(8))))
		case 2:
			vals = append(vals, math.Float64frombits(r.Uint64()))
		default:
			vals = append(vals, float64(r.IntN(100000))/100)
		}
	}
	for _, v := range vals {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		s := string(appendValue(nil, v))
		got, err := strconv.ParseFloat(s, 64)
		if err != nil || got != v {
			t.Fatalf("appendValue(%v) = %q, parses to %v (%v)", v, s, got, err)
		}
		if s[0] == '+' {
			t.Fatalf("appendValue(%v) = %q starts with '+'", v, s)
		}
		if short := strconv.FormatFloat(v, 'g', -1, 64); len(digitsOf(s)) > len(digitsOf(short)) {
			t.Fatalf("appendValue(%v) = %q has more digits than %q", v, s, short)
		}
	}
}

func digitsOf(s string) string {
	var out []byte
	for i := 0; i < len(s); i++ {
		if s[i] == 'e' {
			break
		}
		if s[i] >= '0' && s[i] <= '9' {
			out = append(out, s[i])
		}
	}
	// leading and trailing zeros are not significant
	for len(out) > 1 && out[0] == '0' {
		out = out[1:]
	}
	for len(out) > 1 && out[len(out)-1] == '0' {
		out = out[:len(out)-1]
	}
	return string(out)
}
