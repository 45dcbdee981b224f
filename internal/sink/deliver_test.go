package sink

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/les-streams/les/internal/model"
)

// fakeSink calls send for every attempt and records when it started.
type fakeSink struct {
	send  func(ctx context.Context, attempt int) error
	times []time.Time
}

func (f *fakeSink) Send(ctx context.Context, b *model.Batch, m Meta) error {
	f.times = append(f.times, time.Now())
	return f.send(ctx, len(f.times))
}

func (f *fakeSink) Close() error { return nil }

func (f *fakeSink) gaps() []time.Duration {
	var g []time.Duration
	for i := 1; i < len(f.times); i++ {
		g = append(g, f.times[i].Sub(f.times[i-1]))
	}
	return g
}

var errFlaky = errors.New("flaky")

func TestDeliverRetriesWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeSink{send: func(ctx context.Context, n int) error {
			if n <= 4 {
				return errFlaky
			}
			return nil
		}}
		var retried []error
		rc := RetryConfig{InitialBackoff: 100 * time.Millisecond, MaxBackoff: 300 * time.Millisecond}
		if err := Deliver(t.Context(), f, &model.Batch{}, Meta{RecordID: "r"}, rc, func(err error) { retried = append(retried, err) }); err != nil {
			t.Fatalf("Deliver: %v", err)
		}
		if len(f.times) != 5 || len(retried) != 4 {
			t.Fatalf("attempts %d, onRetry calls %d; want 5, 4", len(f.times), len(retried))
		}
		// backoff 100ms, 200ms, 300ms (capped), 300ms; each wait in [b/2, b]
		maxes := []time.Duration{100, 200, 300, 300}
		for i, g := range f.gaps() {
			hi := maxes[i] * time.Millisecond
			if g < hi/2 || g > hi {
				t.Errorf("wait %d = %v, want in [%v, %v]", i, g, hi/2, hi)
			}
		}
	})
}

func TestDeliverPermanent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		perm := Permanent(errors.New("bad request"))
		f := &fakeSink{send: func(context.Context, int) error { return perm }}
		err := Deliver(t.Context(), f, &model.Batch{}, Meta{}, RetryConfig{}, func(error) { t.Error("onRetry called") })
		if err != perm || !errors.Is(err, ErrPermanent) || len(f.times) != 1 {
			t.Fatalf("err %v after %d attempts; want the permanent error after 1", err, len(f.times))
		}
	})
}

func TestDeliverMaxAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeSink{send: func(context.Context, int) error { return errFlaky }}
		err := Deliver(t.Context(), f, &model.Batch{}, Meta{}, RetryConfig{MaxAttempts: 3}, nil)
		if !errors.Is(err, errFlaky) || len(f.times) != 3 {
			t.Fatalf("err %v after %d attempts; want errFlaky after 3", err, len(f.times))
		}
	})
}

func TestDeliverContextEndsDuringBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		start := time.Now()
		f := &fakeSink{send: func(context.Context, int) error { return errFlaky }}
		err := Deliver(ctx, f, &model.Batch{}, Meta{}, RetryConfig{InitialBackoff: time.Second, MaxBackoff: 4 * time.Second}, nil)
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, errFlaky) {
			t.Fatalf("err = %v; want deadline exceeded wrapping the last attempt's error", err)
		}
		if el := time.Since(start); el != 10*time.Second {
			t.Errorf("returned after %v, want 10s", el)
		}
		// waits: ≤1s, ≤2s, ≤4s, ≤4s ... at least 3 attempts fit in 10s
		if len(f.times) < 3 {
			t.Errorf("only %d attempts", len(f.times))
		}
	})
}

func TestDeliverCanceledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f := &fakeSink{send: func(context.Context, int) error { return nil }}
	if err := Deliver(ctx, f, &model.Batch{}, Meta{}, RetryConfig{}, nil); !errors.Is(err, context.Canceled) || len(f.times) != 0 {
		t.Fatalf("err %v, %d attempts", err, len(f.times))
	}
}

func TestDeliverPerAttemptTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var deadlines []time.Duration
		f := &fakeSink{}
		f.send = func(ctx context.Context, n int) error {
			d, _ := ctx.Deadline()
			deadlines = append(deadlines, d.Sub(time.Now()))
			if n == 1 {
				<-ctx.Done() // hang until the attempt times out
				return ctx.Err()
			}
			return nil
		}
		var retried []error
		err := Deliver(t.Context(), f, &model.Batch{}, Meta{}, RetryConfig{Timeout: 2 * time.Second, InitialBackoff: time.Second},
			func(err error) { retried = append(retried, err) })
		if err != nil {
			t.Fatal(err)
		}
		if len(retried) != 1 || !errors.Is(retried[0], context.DeadlineExceeded) {
			t.Errorf("retried %v", retried)
		}
		if d := cmp.Diff([]time.Duration{2 * time.Second, 2 * time.Second}, deadlines); d != "" {
			t.Errorf("attempt deadlines -want +got\n%s", d)
		}
		if g := f.gaps()[0]; g < 2500*time.Millisecond || g > 3*time.Second {
			t.Errorf("second attempt %v after the first, want 2s timeout + [0.5s,1s] backoff", g)
		}
	})
}

func TestRetryConfigValidate(t *testing.T) {
	var c RetryConfig
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := RetryConfig{InitialBackoff: 100 * time.Millisecond, MaxBackoff: 30 * time.Second, Timeout: 30 * time.Second}
	if d := cmp.Diff(want, c); d != "" {
		t.Errorf("defaults -want +got\n%s", d)
	}
	for _, bad := range []RetryConfig{{MaxAttempts: -1}, {Timeout: -1}, {InitialBackoff: time.Minute, MaxBackoff: time.Second}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}
