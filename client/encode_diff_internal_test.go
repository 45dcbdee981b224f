package client

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestEncodeMatchesReference: every metric call writes exactly the bytes
// the encoder wrote before its fast paths (encode_ref_internal_test.go),
// for clean and hostile names, tags, members and values, with and without
// a namespace and constant tags, per-call tags overriding constant ones,
// and calls refused for their length or tag count.
func TestEncodeMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	pieces := []string{"a", "b", "z", "Q", "0", "9", ".", "_", "-", "/", " ", "#", "@", "=", "{", "}",
		":", "|", ",", "\n", "\t", "\x00", "\x1f", "\x7f", "é", "値", "\xff", "\xc3", "\xe2\x82", "_e{", "source", "env", "route"}
	str := func(max int, hostile bool) string {
		var sb strings.Builder
		for range r.IntN(max + 1) {
			if hostile && r.IntN(4) == 0 {
				sb.WriteString(pieces[r.IntN(len(pieces))])
			} else {
				sb.WriteByte("abcdefghijklmnopqrstuvwxyz0123456789._/-"[r.IntN(40)])
			}
		}
		return sb.String()
	}
	value := func() float64 {
		switch r.IntN(7) {
		case 0:
			return float64(r.IntN(20000) - 10000)
		case 1:
			return float64(r.IntN(2_000_000)-1_000_000) / math.Pow(10, float64(r.IntN(8)))
		case 2:
			return math.Float64frombits(r.Uint64()) // NaN and ±Inf included, now and then
		case 3:
			return r.NormFloat64() * math.Pow(10, float64(r.IntN(30)-10))
		case 4:
			return []float64{0, math.Copysign(0, -1), 1e15, 1e15 - 1, -1e15, 1e9, 999999999.999999, 1e21, 1e-6, 1e-7,
				math.Inf(1), math.NaN(), 0.1, 0.30000000000000004, 2.675}[r.IntN(15)]
		default:
			return float64(r.IntN(100000)) / 100
		}
	}
	for round := range 300 {
		hostile := round%3 == 0
		max := []int{512, 2048, LoopbackDatagram}[r.IntN(3)]
		opts := []Option{WithAddr("127.0.0.1:9"), WithLogsAddr("127.0.0.1:9"), WithFlushInterval(0), WithMaxDatagram(max)}
		if r.IntN(2) == 0 {
			opts = append(opts, WithNamespace(str(8, hostile)))
		}
		if r.IntN(3) > 0 {
			opts = append(opts, WithSource(str(10, hostile)))
		}
		var consts []Tag
		for range r.IntN(4) {
			consts = append(consts, Tag{Key: []string{"env", "team", "route", str(6, hostile)}[r.IntN(4)], Value: str(8, hostile)})
		}
		opts = append(opts, WithTags(consts...))
		c, err := New(opts...)
		if err != nil {
			t.Fatal(err)
		}
		p := c.metrics
		for range 400 {
			name := str(24, hostile)
			if r.IntN(50) == 0 {
				name = strings.Repeat("n", max-r.IntN(40)) // at the length limit
			}
			var tags []Tag
			nt := r.IntN(5)
			if r.IntN(100) == 0 {
				nt = MaxTags - 2 + r.IntN(4)
			}
			for range nt {
				k := str(10, hostile)
				switch r.IntN(8) {
				case 0:
					k = "env"
				case 1:
					k = "source"
				case 2:
					k = ""
				}
				tags = append(tags, Tag{Key: k, Value: str(12, hostile)})
			}
			v := value()
			var want []byte
			var nb [32]byte
			switch op := r.IntN(7); op {
			case 0:
				iv := int64(v)
				want = c.refMetric(name, strconv.AppendInt(nb[:0], iv, 10), "", "c", tags, false, max)
				c.Count(name, iv, tags...)
			case 1:
				if finite(v) {
					want = c.refMetric(name, refAppendValue(nb[:0], v), "", "g", tags, v < 0, max)
				}
				c.Gauge(name, v, tags...)
			case 2, 3:
				typ := map[int]string{2: "d", 3: "h"}[op]
				if finite(v) {
					want = c.refMetric(name, refAppendValue(nb[:0], v), "", typ, tags, false, max)
				}
				if op == 2 {
					c.Distribution(name, v, tags...)
				} else {
					c.Histogram(name, v, tags...)
				}
			case 4:
				d := time.Duration(r.Int64N(int64(time.Hour))) >> r.IntN(40)
				want = c.refMetric(name, refAppendValue(nb[:0], float64(d)/float64(time.Millisecond)), "", "ms", tags, false, max)
				c.Timing(name, d, tags...)
			case 5:
				want = c.refMetric(name, []byte{'1'}, "", "c", tags, false, max)
				c.Incr(name, tags...)
			default:
				m := str(12, hostile)
				if m != "" {
					want = c.refMetric(name, nil, m, "s", tags, false, max)
				}
				c.Set(name, m, tags...)
			}
			got := p.cur.b
			if !bytes.Equal(got, want) {
				t.Fatalf("round %d: wrote\n%q\nwant\n%q", round, got, want)
			}
			p.cur.b, p.cur.lines = p.cur.b[:0], 0
		}
		c.Close()
	}
}

// TestAppendValueMatchesReference: appendValue writes the same bytes as
// before for every kind of value.
func TestAppendValueMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 2_000_000 {
		var v float64
		switch i % 5 {
		case 0:
			v = math.Float64frombits(r.Uint64())
		case 1:
			v = float64(r.Int64N(2e9)-1e9) / math.Pow(10, float64(r.IntN(9)))
		case 2:
			v = r.NormFloat64() * math.Pow(10, float64(r.IntN(30)-12))
		case 3:
			v = float64(r.Int64N(1<<53)) / math.Pow(10, float64(r.IntN(20)))
		default:
			v = float64(r.IntN(1_000_000)) / 1000
		}
		if !finite(v) {
			continue
		}
		var a, b [32]byte
		if got, want := appendValue(a[:0], v), refAppendValue(b[:0], v); !bytes.Equal(got, want) {
			t.Fatalf("appendValue(%v) = %q, want %q", v, got, want)
		}
	}
}
