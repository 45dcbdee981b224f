package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/les-streams/les/internal/ingest"
	"github.com/les-streams/les/internal/stream"
)

// publishWatch is the stream as the agent's batcher, spool and record
// intake publish to it, remembering whether the last publish failed: the
// readiness check's "stream down".
type publishWatch struct {
	Stream
	mu      sync.Mutex
	failed  time.Time // when the failures began; zero after a success
	lastErr error
	lastAt  time.Time // when the last failure was
}

func watchPublish(st Stream) *publishWatch { return &publishWatch{Stream: st} }

// Publish implements stream.Stream.
func (p *publishWatch) Publish(ctx context.Context, recs ...stream.Record) error {
	err := p.Stream.Publish(ctx, recs...)
	// A record refused for good says nothing about the stream.
	if err != nil && (errors.Is(err, stream.ErrTooLarge) || errors.Is(err, stream.ErrRejected)) {
		return err
	}
	p.mu.Lock()
	switch {
	case err == nil:
		p.failed, p.lastErr = time.Time{}, nil
	case p.failed.IsZero():
		p.failed, p.lastErr, p.lastAt = time.Now(), err, time.Now()
	default:
		p.lastErr, p.lastAt = err, time.Now()
	}
	p.mu.Unlock()
	return err
}

// down reports since when publishes fail, and the last error.
func (p *publishWatch) down() (time.Time, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed, p.lastErr
}

// outOfStorage reports the last publish error when it said the stream has
// no room, and it happened within the last storageErrFor (so that with
// intake refused, a later publish — of the spool, or after storageErrFor —
// finds out when there is room again).
func (p *publishWatch) outOfStorage() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failed.IsZero() || time.Since(p.lastAt) > storageErrFor || !isStorageErr(p.lastErr) {
		return nil
	}
	return p.lastErr
}

// storageErrFor is how long a publish refused for lack of storage keeps
// intake refused without another publish saying so.
const storageErrFor = 5 * time.Second

// isStorageErr tells errors of a stream that has no room to store from
// others: JetStream's "insufficient resources" and "insufficient storage
// resources available", a server's ENOSPC ("no space left on device"),
// Kafka's KAFKA_STORAGE_ERROR.
func isStorageErr(err error) bool {
	if err == nil {
		return false
	}
	s := strings.ToLower(err.Error())
	for _, m := range []string{"insufficient resources", "insufficient storage", "no space left", "storage error", "storage resources exceeded"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

// readiness answers /readyz: 200 while les can accept data, else 503 with
// the reasons as JSON: the stream does not take records, the spool is
// full, or the data directory's disk is.
type readiness struct {
	pub   *publishWatch
	spool *ingest.Spool
	// spoolReserve is the room a batch needs: less than that left in the
	// spool is full.
	spoolReserve int64
	dataDir      string
	// minFree is the free space under which the disk counts as full.
	minFree uint64
	// streamOnDisk: the stream stores in dataDir (embedded), so less than
	// minFree there means it cannot store.
	streamOnDisk bool
	// extra are further checks (each returns "" when fine).
	extra []func() string
}

// minFreeBytes is the free space in the data directory below which les
// reports the disk as full: less than a few batches (JetStream and the
// spool write whole records).
func minFreeBytes(maxBatchBytes int) uint64 {
	return max(uint64(maxBatchBytes)*4, 16<<20)
}

func (rd *readiness) reasons() []string {
	var rs []string
	if rd.pub != nil {
		if since, err := rd.pub.down(); !since.IsZero() {
			rs = append(rs, fmt.Sprintf("stream down: publishes failing since %s (%s ago): %v",
				since.UTC().Format(time.RFC3339), time.Since(since).Round(time.Second), err))
		}
	}
	if rd.spool != nil {
		if used, limit := rd.spool.Usage(); limit > 0 && used+rd.spoolReserve > limit {
			rs = append(rs, fmt.Sprintf("spool full: %d of agent.spool.max_bytes %d bytes used, a batch needs up to %d", used, limit, rd.spoolReserve))
		}
	}
	if free, ok := diskFree(rd.dataDir); ok && free < rd.minFree {
		rs = append(rs, fmt.Sprintf("disk full: %d bytes free under %s (less than %d)", free, rd.dataDir, rd.minFree))
	}
	for _, f := range rd.extra {
		if r := f(); r != "" {
			rs = append(rs, r)
		}
	}
	return rs
}

// cannotStore reports why nothing intake accepts can be stored now, or ""
// when it can: the stream has no room (its disk, for the embedded stream,
// has less than minFree free — les refuses before nats-server runs out of
// space, which disables JetStream until a restart — or its last publish
// was refused for lack of storage) and the spool cannot take another batch
// either (full to agent.spool.max_bytes, or less than minFree free on its
// disk).
func (rd *readiness) cannotStore() string {
	var stream string
	if rd.streamOnDisk {
		if free, ok := diskFree(rd.dataDir); ok && free < rd.minFree {
			stream = fmt.Sprintf("disk full: %d bytes free under %s (less than %d)", free, rd.dataDir, rd.minFree)
		}
	}
	if stream == "" && rd.pub != nil {
		if err := rd.pub.outOfStorage(); err != nil {
			stream = fmt.Sprintf("stream has no room: %v", err)
		}
	}
	if stream == "" {
		return ""
	}
	if rd.spool == nil {
		return stream
	}
	var spool string
	if used, limit := rd.spool.Usage(); limit > 0 && used+rd.spoolReserve > limit {
		spool = fmt.Sprintf("spool full: %d of agent.spool.max_bytes %d bytes used", used, limit)
	} else if free, ok := diskFree(rd.spool.Dir()); ok && free < rd.minFree {
		spool = fmt.Sprintf("spool disk full: %d bytes free under %s (less than %d)", free, rd.spool.Dir(), rd.minFree)
	}
	if spool == "" {
		return ""
	}
	return stream + "; " + spool
}

func (rd *readiness) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rs := rd.reasons()
	w.Header().Set("Content-Type", "application/json")
	status := http.StatusOK
	if len(rs) > 0 {
		status = http.StatusServiceUnavailable
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Ready   bool     `json:"ready"`
		Reasons []string `json:"reasons"`
	}{len(rs) == 0, append([]string{}, rs...)})
}
