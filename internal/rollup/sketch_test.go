package rollup

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/les-streams/les/internal/model"
)

var testQuantiles = []float64{0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1}

// exactQuantile is the order statistic DDSketch estimates (see
// Sketch.Quantile): with r = q*(n-1), x[floor(r)], or among the negative
// values x[min(ceil(r), last negative)].
func exactQuantile(sorted []float64, q float64) float64 {
	r := q * float64(len(sorted)-1)
	neg, _ := slices.BinarySearch(sorted, 0) // number of negative values
	if r < float64(neg) {
		return sorted[min(int(math.Ceil(r)), neg-1)]
	}
	return sorted[int(math.Floor(r))]
}

func TestSketchAccuracy(t *testing.T) {
	const n = 200_000
	gens := map[string]func(r *rand.Rand) float64{
		"lognormal": func(r *rand.Rand) float64 { return math.Exp(r.NormFloat64()*1.5 + 3) },
		"bimodal": func(r *rand.Rand) float64 {
			if r.IntN(3) == 0 {
				return 5000 + 300*r.NormFloat64()
			}
			return math.Abs(20 + 3*r.NormFloat64())
		},
		"constant":   func(*rand.Rand) float64 { return 42.125 },
		"mixed_sign": func(r *rand.Rand) float64 { return r.NormFloat64() * 1000 },
		"with_zeros": func(r *rand.Rand) float64 { return float64(r.IntN(4)) * r.ExpFloat64() },
	}
	for name, gen := range gens {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			s := NewSketch()
			xs := make([]float64, n)
			var sum float64
			for i := range xs {
				xs[i] = gen(r)
				sum += xs[i]
				s.Add(xs[i])
			}
			slices.Sort(xs)
			if s.Count() != n || s.Min() != xs[0] || s.Max() != xs[n-1] || math.Abs(s.Sum()-sum) > 1e-9*math.Abs(sum)+1e-9 {
				t.Fatalf("count/min/max/sum = %v/%v/%v/%v, want %v/%v/%v/%v", s.Count(), s.Min(), s.Max(), s.Sum(), n, xs[0], xs[n-1], sum)
			}
			for _, q := range testQuantiles {
				want := exactQuantile(xs, q)
				got := s.Quantile(q)
				if math.Abs(got-want) > RelativeAccuracy*math.Abs(want)*(1+1e-9) {
					t.Errorf("q=%v: got %v, exact %v, rel err %.4f", q, got, want, math.Abs(got-want)/math.Abs(want))
				}
			}
		})
	}
}

func sketchOf(xs ...float64) *Sketch {
	s := NewSketch()
	for _, x := range xs {
		s.Add(x)
	}
	return s
}

func TestCentroidsRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	s := NewSketch()
	for range 100_000 {
		switch r.IntN(10) {
		case 0:
			s.Add(0)
		case 1:
			s.Add(-math.Exp(r.NormFloat64() * 10))
		default:
			s.Add(math.Exp(r.NormFloat64() * 20))
		}
	}
	cs := s.Centroids(nil)
	if !slices.IsSortedFunc(cs, func(a, b model.Centroid) int { return cmpFloat(a.Value, b.Value) }) {
		t.Fatal("centroids not sorted")
	}
	back := NewSketch()
	for _, c := range cs {
		back.AddWeighted(c.Value, c.Count)
	}
	if diff := cmp.Diff(cs, back.Centroids(nil)); diff != "" {
		t.Fatalf("round trip changed bins (-want +got):\n%s", diff)
	}
	// Twice through: still identical.
	again := NewSketch()
	for _, c := range back.Centroids(nil) {
		again.AddWeighted(c.Value, c.Count)
	}
	if diff := cmp.Diff(cs, again.Centroids(nil)); diff != "" {
		t.Fatalf("second round trip changed bins:\n%s", diff)
	}
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestMergeExact(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	all := NewSketch()
	parts := make([]*Sketch, 1000)
	for i := range parts {
		parts[i] = NewSketch()
		for range 100 {
			v := math.Exp(r.NormFloat64()*2 + 5)
			parts[i].Add(v)
			all.Add(v)
		}
	}
	merged := NewSketch()
	for _, p := range parts {
		merged.Merge(p)
	}
	if diff := cmp.Diff(all.Centroids(nil), merged.Centroids(nil)); diff != "" {
		t.Fatalf("merged bins differ:\n%s", diff)
	}
	if merged.Count() != all.Count() || merged.Min() != all.Min() || merged.Max() != all.Max() {
		t.Fatal("merged stats differ")
	}
	// Merging through centroids (as through the stream) is exact too.
	viaStream := NewSketch()
	for _, p := range parts {
		viaStream.mergeCentroids(p.Centroids(nil), p.Sum(), p.Min(), p.Max())
	}
	if diff := cmp.Diff(all.Centroids(nil), viaStream.Centroids(nil)); diff != "" {
		t.Fatalf("merge via centroids differs:\n%s", diff)
	}
	for _, q := range testQuantiles {
		if all.Quantile(q) != viaStream.Quantile(q) {
			t.Errorf("q=%v: %v != %v", q, all.Quantile(q), viaStream.Quantile(q))
		}
	}
}

func TestSketchMarshal(t *testing.T) {
	s := sketchOf(-3, 0, 1, 2.5, 1e6, 1e-3)
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got Sketch
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(s.Centroids(nil), got.Centroids(nil)); diff != "" {
		t.Fatal(diff)
	}
	if got.Count() != s.Count() || got.Sum() != s.Sum() || got.Min() != s.Min() || got.Max() != s.Max() {
		t.Fatal("stats differ")
	}
	for i := range len(b) {
		var x Sketch
		_ = x.UnmarshalBinary(b[:i]) // must not panic
	}
	empty := NewSketch()
	if !math.IsNaN(empty.Quantile(0.5)) {
		t.Fatal("empty quantile not NaN")
	}
}

func TestSketchAddAllocs(t *testing.T) {
	s := NewSketch()
	for i := range 1000 {
		s.Add(float64(i))
	}
	if a := testing.AllocsPerRun(1000, func() { s.Add(123.4) }); a != 0 {
		t.Fatalf("Add allocates %v", a)
	}
}

func BenchmarkSketchAdd(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 8))
	xs := make([]float64, 4096)
	for i := range xs {
		xs[i] = math.Exp(r.NormFloat64()*1.5 + 3)
	}
	s := NewSketch()
	for _, x := range xs {
		s.Add(x)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.Add(xs[i&4095])
		i++
	}
}

func BenchmarkSketchMerge1000(b *testing.B) {
	r := rand.New(rand.NewPCG(9, 10))
	parts := make([]*Sketch, 1000)
	for i := range parts {
		parts[i] = NewSketch()
		for range 200 {
			parts[i].Add(math.Exp(r.NormFloat64()*1.5 + 3))
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		m := NewSketch()
		for _, p := range parts {
			m.Merge(p)
		}
	}
	enc, _ := parts[0].MarshalBinary()
	b.ReportMetric(float64(len(enc)), "encoded_bytes/sketch")
}

func BenchmarkSketchMerge1000Centroids(b *testing.B) {
	r := rand.New(rand.NewPCG(9, 10))
	parts := make([][]model.Centroid, 1000)
	for i := range parts {
		s := NewSketch()
		for range 200 {
			s.Add(math.Exp(r.NormFloat64()*1.5 + 3))
		}
		parts[i] = s.Centroids(nil)
	}
	b.ReportAllocs()
	for b.Loop() {
		m := NewSketch()
		for _, p := range parts {
			m.mergeCentroids(p, 0, math.Inf(1), math.Inf(-1))
		}
	}
}
