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

// TestDropCount: the drop count is read from the control messages in
// place, the last one if there are several, past other messages, and a
// cut or empty buffer gives none; without allocating.
func TestDropCount(t *testing.T) {
	other := rxqOvfl(7)
	(*syscall.Cmsghdr)(unsafe.Pointer(&other[0])).Type = soRxqOvfl + 1 // not a drop count
	for _, c := range []struct {
		name  string
		oob   []byte
		total uint32
		ok    bool
	}{
		{"one", rxqOvfl(42), 42, true},
		{"after another message", append(other, rxqOvfl(5)...), 5, true},
		{"two: the last", append(rxqOvfl(3), rxqOvfl(9)...), 9, true},
		{"only another message", other, 0, false},
		{"cut", rxqOvfl(1)[:syscall.CmsgLen(0)+2], 0, false},
		{"empty", nil, 0, false},
	} {
		if total, ok := dropCount(c.oob); total != c.total || ok != c.ok {
			t.Errorf("%s: %d, %v; want %d, %v", c.name, total, ok, c.total, c.ok)
		}
	}
	oob := rxqOvfl(42)
	if a := testing.AllocsPerRun(100, func() { dropCount(oob) }); a != 0 {
		t.Fatalf("%.0f allocations per drop count", a)
	}
}
