package ingest

import (
	"syscall"
	"unsafe"
)

// Linux's SO_MEMINFO returns the socket's memory counters; SK_MEMINFO_DROPS
// (index 8, since Linux 4.6) is sk_drops, the count /proc/net/udp shows.
const (
	soMeminfo      = 55
	skMeminfoDrops = 8
	skMeminfoVars  = 9
)

// socketDrops returns the socket's cumulative drop count; false if the
// kernel does not report it.
func socketDrops(fd uintptr) (uint32, bool) {
	var mem [skMeminfoVars]uint32
	l := uint32(unsafe.Sizeof(mem))
	_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.SOL_SOCKET, soMeminfo,
		uintptr(unsafe.Pointer(&mem[0])), uintptr(unsafe.Pointer(&l)), 0)
	if errno != 0 || l < (skMeminfoDrops+1)*4 {
		return 0, false
	}
	return mem[skMeminfoDrops], true
}
