package sink

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/les-streams/les/internal/model"
)

// RetryConfig is what users write under a sink's `retry:` key.
type RetryConfig struct {
	// MaxAttempts bounds the number of Send calls; 0 retries until ctx ends.
	MaxAttempts int `yaml:"max_attempts"`
	// InitialBackoff is the wait after the first failure (default 100ms);
	// it doubles after each further failure up to MaxBackoff (default 30s).
	// Each wait is drawn uniformly from [backoff/2, backoff] (jitter).
	InitialBackoff time.Duration `yaml:"initial_backoff"`
	MaxBackoff     time.Duration `yaml:"max_backoff"`
	// Timeout bounds each attempt (default 30s).
	Timeout time.Duration `yaml:"timeout"`
}

// Validate fills defaults and checks values. An initial_backoff above the
// default max_backoff raises max_backoff to it.
func (c *RetryConfig) Validate() error {
	if c.MaxAttempts < 0 || c.InitialBackoff < 0 || c.MaxBackoff < 0 || c.Timeout < 0 {
		return errors.New("retry: max_attempts, initial_backoff, max_backoff and timeout must not be negative")
	}
	if c.MaxBackoff != 0 && c.MaxBackoff < c.InitialBackoff {
		return fmt.Errorf("retry: max_backoff %v is less than initial_backoff %v", c.MaxBackoff, c.InitialBackoff)
	}
	c.fill()
	return nil
}

func (c *RetryConfig) fill() {
	if c.InitialBackoff <= 0 {
		c.InitialBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.MaxBackoff < c.InitialBackoff {
		c.MaxBackoff = c.InitialBackoff
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
}

// Deliver sends b to s, retrying failures with exponential backoff and
// jitter, each attempt bounded by rc.Timeout. It returns nil on the first
// successful Send. It stops and returns:
//   - the Send error unchanged when it wraps ErrPermanent;
//   - an error wrapping ctx.Err() and the last Send error when ctx ends;
//   - an error wrapping the last Send error after rc.MaxAttempts attempts.
//
// onRetry, if not nil, is called with each failure that will be retried,
// before waiting. A failure that is a *RetryAfterError waits what the
// backend asked (at most rc.MaxBackoff) instead of the backoff. Zero fields of rc take the defaults of Validate. Deliver
// does not keep b after it returns (it is only passed to s.Send).
func Deliver(ctx context.Context, s Sink, b *model.Batch, m Meta, rc RetryConfig, onRetry func(error)) error {
	rc.fill()
	backoff := rc.InitialBackoff
	var timer *time.Timer
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, rc.Timeout)
		err := s.Send(actx, b, m)
		cancel()
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrPermanent) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("sink: %w; last attempt: %w", ctx.Err(), err)
		}
		if rc.MaxAttempts > 0 && attempt >= rc.MaxAttempts {
			return fmt.Errorf("sink: giving up after %d attempts: %w", attempt, err)
		}
		if onRetry != nil {
			onRetry(err)
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		if ra, ok := errors.AsType[*RetryAfterError](err); ok {
			wait = min(ra.After, rc.MaxBackoff) // the backend's word, bounded
		}
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
		} else {
			timer.Reset(wait)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sink: %w; last attempt: %w", ctx.Err(), err)
		case <-timer.C:
		}
		backoff = min(backoff*2, rc.MaxBackoff)
	}
}
