package ingest

import "sync"

// turnstile lets the readers of one socket hand their batches to the
// batcher in the order they received them, while they decode in parallel:
// a reader takes a turn together with its stamps (under UDP.recvMu),
// decodes, then waits for its turn, delivers and passes the turn on. So
// the points of a series reach the batcher, and then the stream, in
// stamp order (issue 9: Prometheus refuses a series' samples out of
// order). Every turn taken must be passed on (pass or done), or later
// readers wait for ever.
type turnstile struct {
	issued uint64 // the next turn to take; UDP.recvMu

	mu   sync.Mutex
	cond sync.Cond // L is mu, set on first use under mu
	next uint64    // the turn being served; mu
}

// take returns the next turn. Called with UDP.recvMu held.
func (t *turnstile) take() uint64 {
	n := t.issued
	t.issued++
	return n
}

// wait blocks until it is turn n's turn.
func (t *turnstile) wait(n uint64) {
	t.mu.Lock()
	if t.cond.L == nil {
		t.cond.L = &t.mu
	}
	for t.next != n {
		t.cond.Wait()
	}
	t.mu.Unlock()
}

// done ends the current turn.
func (t *turnstile) done() {
	t.mu.Lock()
	t.next++
	if t.cond.L != nil {
		t.cond.Broadcast()
	}
	t.mu.Unlock()
}

// pass waits for turn n and ends it at once (a turn with nothing to
// deliver).
func (t *turnstile) pass(n uint64) {
	t.wait(n)
	t.done()
}
