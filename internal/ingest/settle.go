package ingest

import (
	"context"
	"sync"
)

// Settle cuts every open batch and waits until no batch that was cut
// (by size, age, Flush or Settle) is still waiting: each has been
// published, spooled or counted as lost. It returns ctx's error when ctx
// ends first; the batches then stay queued and are published (or
// spooled) later. Settle never blocks on a full publish queue beyond ctx.
// After Run has begun its drain, Settle only waits.
//
// The Lambda extension calls it at the end of an invocation with a short
// deadline, before the sandbox is frozen.
func (b *Batcher) Settle(ctx context.Context) error {
	b.mu.Lock()
	if !b.closed {
		b.cut(0) // queued without waiting for room: the queue may be full while the stream is slow
	}
	b.mu.Unlock()
	return b.unsettled.wait(ctx)
}

// Unsettled is the number of batches cut and not yet published, spooled
// or lost.
func (b *Batcher) Unsettled() int {
	b.unsettled.mu.Lock()
	defer b.unsettled.mu.Unlock()
	return b.unsettled.n
}

// settler counts outstanding batches and wakes waiters when none is left.
type settler struct {
	mu      sync.Mutex
	n       int
	waiters []chan struct{}
}

func (s *settler) add(n int) {
	s.mu.Lock()
	s.n += n
	s.mu.Unlock()
}

func (s *settler) done() {
	s.mu.Lock()
	s.n--
	if s.n == 0 {
		for _, w := range s.waiters {
			close(w)
		}
		s.waiters = nil
	}
	s.mu.Unlock()
}

// wait returns nil once n is 0, or ctx's error.
func (s *settler) wait(ctx context.Context) error {
	s.mu.Lock()
	if s.n == 0 {
		s.mu.Unlock()
		return nil
	}
	w := make(chan struct{})
	s.waiters = append(s.waiters, w)
	s.mu.Unlock()
	select {
	case <-w:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
