package wavefront

import (
	"bytes"
	"strconv"
	"testing"

	"github.com/les-streams/les/internal/model"
)

// realisticPayload returns n lines shaped like Lambda telemetry: dotted
// names, 3–8 tags, about 10% with timestamps, some quoted values and a few
// distribution lines. It is deterministic.
func realisticPayload(n int) []byte {
	names := []string{"aws.lambda.duration", "aws.lambda.billed_duration", "aws.lambda.max_memory_used", "aws.lambda.invocations", "aws.lambda.errors", "aws.lambda.init_duration", "app.checkout.latency", "∆app.orders.count"}
	fns := []string{"checkout-api", "orders-worker", "payments-webhook", "image-resizer"}
	regions := []string{"us-east-1", "eu-west-1", "ap-southeast-2"}
	var b bytes.Buffer
	for i := range n {
		fn := fns[i%len(fns)]
		switch {
		case i%16 == 7: // distribution line
			b.WriteString("!M ")
			b.WriteString(strconv.Itoa(baseSec + i))
			b.WriteString(" #3 12.5 #1 40.25 #7 8.125 aws.lambda.duration.hist source=")
			b.WriteString(fn)
			b.WriteString(" region=")
			b.WriteString(regions[i%len(regions)])
			b.WriteString(" runtime=nodejs20.x\n")
			continue
		case i%9 == 4: // quoted name and quoted values
			b.WriteString(`"aws.lambda.duration" `)
		default:
			b.WriteString(names[i%len(names)])
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatFloat(float64(i*37%1000)+0.25, 'f', -1, 64))
		if i%10 == 3 {
			b.WriteByte(' ')
			b.WriteString(strconv.Itoa(baseSec + i))
			if i%20 == 3 {
				b.WriteString("123") // milliseconds
			}
		}
		b.WriteString(" source=")
		b.WriteString(fn)
		b.WriteString(" region=")
		b.WriteString(regions[i%len(regions)])
		b.WriteString(" function_name=")
		b.WriteString(fn)
		ntags := 3 + i%6
		if ntags > 3 {
			b.WriteString(` version="$LATEST"`)
		}
		if ntags > 4 {
			b.WriteString(" memory_size=1024")
		}
		if ntags > 5 {
			b.WriteString(` cold_start="false"`)
		}
		if ntags > 6 {
			b.WriteString(" runtime=python3.12")
		}
		if ntags > 7 {
			b.WriteString(" architecture=arm64")
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func TestRealisticPayloadDecodes(t *testing.T) {
	p := realisticPayload(50)
	var b model.Batch
	NewDecoder(Options{}).Decode(&b, p, now)
	if len(b.Rejects) != 0 || b.Len() != 50 || len(b.Dists) == 0 {
		t.Fatalf("items %d dists %d rejects %+v", b.Len(), len(b.Dists), b.Rejects)
	}
	validate(t, &b, Options{})
}

func TestDecodeAllocs(t *testing.T) {
	p := realisticPayload(50)
	d := NewDecoder(Options{})
	var b model.Batch
	for range 3 {
		b.Reset()
		d.Decode(&b, p, now)
	}
	allocs := testing.AllocsPerRun(100, func() {
		b.Reset()
		d.Decode(&b, p, now)
	})
	if allocs != 0 {
		t.Fatalf("Decode of a warm batch: %v allocs, want 0", allocs)
	}
}

func TestAppendAllocs(t *testing.T) {
	p := realisticPayload(50)
	var b model.Batch
	NewDecoder(Options{}).Decode(&b, p, now)
	buf := make([]byte, 0, 1<<16)
	allocs := testing.AllocsPerRun(100, func() {
		buf = buf[:0]
		for i := range b.Metrics {
			buf = AppendMetric(buf, &b.Metrics[i])
		}
		for i := range b.Dists {
			buf = AppendDistribution(buf, &b.Dists[i])
		}
	})
	if allocs != 0 {
		t.Fatalf("Append*: %v allocs, want 0", allocs)
	}
}

func BenchmarkDecode(b *testing.B) {
	const lines = 1000
	p := realisticPayload(lines)
	d := NewDecoder(Options{})
	var batch model.Batch
	d.Decode(&batch, p, now)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		batch.Reset()
		d.Decode(&batch, p, now)
	}
	b.ReportMetric(float64(lines*b.N)/b.Elapsed().Seconds(), "lines/s")
}

func BenchmarkDecodeTrace(b *testing.B) {
	const lines = 1000
	var p []byte
	for i := range lines {
		s := span("aws.lambda.invoke", "7b3bf470-9456-11e8-9eb6-529269fb1459", "0313bafe-9457-11e8-9eb6-52926"+strconv.Itoa(1000+i), "2f64e538-9457-11e8-9eb6-529269fb1459",
			base+int64(i)*1e6, 343e6, "checkout-api", "application", "shop", "service", "checkout", "http.method", "GET")
		p = AppendSpan(p, s)
	}
	d := NewDecoder(Options{Mode: ModeTrace})
	var batch model.Batch
	d.Decode(&batch, p, now)
	if len(batch.Spans) != lines {
		b.Fatalf("rejects: %+v", batch.Rejects[:1])
	}
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		batch.Reset()
		d.Decode(&batch, p, now)
	}
	b.ReportMetric(float64(lines*b.N)/b.Elapsed().Seconds(), "lines/s")
}

func BenchmarkAppendMetric(b *testing.B) {
	p := realisticPayload(100)
	var batch model.Batch
	NewDecoder(Options{}).Decode(&batch, p, now)
	ms := batch.Metrics
	buf := make([]byte, 0, 1<<16)
	n := 0
	for i := range ms {
		n += len(AppendMetric(nil, &ms[i]))
	}
	b.SetBytes(int64(n))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		buf = buf[:0]
		for i := range ms {
			buf = AppendMetric(buf, &ms[i])
		}
	}
	b.ReportMetric(float64(len(ms)*b.N)/b.Elapsed().Seconds(), "lines/s")
}

func BenchmarkAppendDistribution(b *testing.B) {
	d := dist("aws.lambda.duration", base, model.WindowMinute, "checkout-api", cents(1.5, 2, 10, 4, 20, 1, 25, 3, 40, 9), "region", "us-east-1", "runtime", "nodejs20.x")
	buf := AppendDistribution(nil, d)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for range b.N {
		buf = AppendDistribution(buf[:0], d)
	}
}
