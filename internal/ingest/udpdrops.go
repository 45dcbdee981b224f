package ingest

import (
	"sync/atomic"
	"syscall"
	"time"
)

// ReasonKernel labels les_ingest_udp_dropped_total for the datagrams the
// kernel dropped because the socket's receive buffer was full. What les
// itself drops after receiving a datagram is a rejection with its own
// reason (les_ingest_rejected_total{reason="datagram_too_large"}).
const ReasonKernel = "kernel"

// dropSyncInterval bounds how stale the kernel drop count can be while no
// datagram arrives (see kernelDrops); the read path asks at most every
// dropSyncMin, so that a lightly loaded socket, whose every read empties
// the queue, does not pay a system call per read (2.5 µs on a busy
// machine).
const (
	dropSyncInterval = time.Second
	dropSyncMin      = 100 * time.Millisecond
)

// kernelDrops keeps les_ingest_udp_dropped_total equal to the kernel's own
// per-socket drop count (sk_drops, the "drops" column of /proc/net/udp).
//
// The SO_RXQ_OVFL count each datagram carries is the count when that
// datagram was queued, so drops after the newest queued datagram reach les
// only with a later datagram, and never if none follows: an overloaded run
// undercounted the kernel by 3 %. So the reader also asks the socket for its
// current count (SO_MEMINFO on Linux) when a read emptied the queue (at
// most every dropSyncMin), every dropSyncInterval, and once more before the
// socket closes. Drops
// only happen while datagrams are queued, and the reader reads the queue
// empty again after them, so once traffic stops the counter is exact.
type kernelDrops struct {
	raw   syscall.RawConn // nil: the count is unknown (not udp, not Linux)
	read  func(fd uintptr)
	total uint32 // written by read, under UDP.mu
	ok    bool
	last  atomic.Int64 // receive stamp of the read path's last sync
}

// initKernelDrops prepares u to read its socket's drop count; it allocates
// once so that syncDrops does not.
func (u *UDP) initKernelDrops() {
	if u.cfg.Network != "udp" {
		return
	}
	sc, ok := u.conn.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	u.kdrops.raw = raw
	u.kdrops.read = func(fd uintptr) { u.kdrops.total, u.kdrops.ok = socketDrops(fd) }
}

// syncDropsAt is syncDrops from the read path, whose read was stamped now
// (Unix ns): at most once per dropSyncMin across the socket's readers.
func (u *UDP) syncDropsAt(now int64) {
	last := u.kdrops.last.Load()
	if now-last < int64(dropSyncMin) || !u.kdrops.last.CompareAndSwap(last, now) {
		return
	}
	u.syncDrops()
}

// syncDrops brings the counter up to the socket's current drop count.
func (u *UDP) syncDrops() {
	if u.kdrops.raw == nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.kdrops.ok = false
	if err := u.kdrops.raw.Control(u.kdrops.read); err != nil || !u.kdrops.ok {
		return
	}
	u.noteDropsLocked(u.kdrops.total)
}

// noteDropsLocked takes a cumulative drop count seen now (u.mu held).
func (u *UDP) noteDropsLocked(total uint32) {
	switch {
	case !u.haveDrops:
		u.dropped.Add(int(total))
		u.lastDrops, u.haveDrops = total, true
	case int32(total-u.lastDrops) > 0:
		// Newer (also across the counter's wrap-around). Readers sharing
		// the socket see counts out of order: an older one is ignored, or
		// the next newer one would count again.
		u.dropped.Add(int(total - u.lastDrops))
		u.lastDrops = total
	}
}
