package ingest

import (
	"encoding/binary"
	"syscall"
	"testing"
	"unsafe"

	"github.com/les-streams/les/internal/selfmetric"
)

// rxqOvfl builds the SO_RXQ_OVFL control message the kernel attaches to
// a datagram: the socket's cumulative drop count.
func rxqOvfl(total uint32) []byte {
	b := make([]byte, syscall.CmsgSpace(4))
	h := (*syscall.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level = syscall.SOL_SOCKET
	h.Type = soRxqOvfl
	h.SetLen(syscall.CmsgLen(4))
	binary.NativeEndian.PutUint32(b[syscall.CmsgLen(0):], total)
	return b
}

// TestUDPDropCountOutOfOrder: readers sharing a socket report the
// cumulative drop count out of order; an older (smaller) count seen after
// a newer one must not make the next newer one count again.
func TestUDPDropCountOutOfOrder(t *testing.T) {
	reg := selfmetric.New()
	u := &UDP{dropped: reg.Counter("les_ingest_udp_dropped_total")}
	for _, total := range []uint32{5, 12, 10, 12, 13} {
		u.countDrops(rxqOvfl(total))
	}
	if got := u.dropped.Get(); got != 13 {
		t.Fatalf("dropped = %d, want 13 (the newest cumulative count)", got)
	}
}
