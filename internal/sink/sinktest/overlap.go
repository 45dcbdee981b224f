package sinktest

import (
	"net/http"
	"sync"
	"time"
)

// OverlapTransport wraps an http.RoundTripper for tests of sinks that take
// concurrent Sends: each request waits (at most Guard, default 10 s, a
// failure guard rather than a wait) until Want requests are in flight at
// once, then goes on to Next. Overlapped reports whether that happened, so
// a sink that serialises its Sends fails the test instead of passing
// slowly. Safe for concurrent use.
type OverlapTransport struct {
	Next  http.RoundTripper
	Want  int           // default 2
	Guard time.Duration // default 10 s

	mu       sync.Mutex
	inFlight int
	most     int
	all      chan struct{} // closed once Want were in flight
}

// RoundTrip implements http.RoundTripper.
func (o *OverlapTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	want, guard := o.Want, o.Guard
	if want <= 0 {
		want = 2
	}
	if guard <= 0 {
		guard = 10 * time.Second
	}
	o.mu.Lock()
	if o.all == nil {
		o.all = make(chan struct{})
	}
	o.inFlight++
	o.most = max(o.most, o.inFlight)
	if o.inFlight == want {
		select {
		case <-o.all:
		default:
			close(o.all)
		}
	}
	all := o.all
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		o.inFlight--
		o.mu.Unlock()
	}()
	t := time.NewTimer(guard)
	defer t.Stop()
	select {
	case <-all:
	case <-t.C:
	case <-r.Context().Done():
	}
	return o.Next.RoundTrip(r)
}

// Overlapped reports whether Want requests were in flight at once, and
// the most that were.
func (o *OverlapTransport) Overlapped() (bool, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	want := o.Want
	if want <= 0 {
		want = 2
	}
	return o.most >= want, o.most
}
