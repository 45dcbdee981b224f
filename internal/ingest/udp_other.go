//go:build !linux

package ingest

// setSocketOptions does nothing outside Linux: there is no SO_RXQ_OVFL
// drop count, and SetReadBuffer in ListenUDP asks for the receive buffer
// through the portable API.
func setSocketOptions(fd uintptr, network string, readBuffer int) error { return nil }

// socketReadBuffer is unknown outside Linux (0: ListenUDP does not
// compare it with what it asked for).
func socketReadBuffer(fd uintptr) int { return 0 }

// dropCount: outside Linux the kernel reports no drop counts.
func dropCount(oob []byte) (total uint32, ok bool) { return 0, false }
