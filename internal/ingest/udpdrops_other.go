//go:build !linux

package ingest

// socketDrops: outside Linux the socket's drop count is unknown.
func socketDrops(fd uintptr) (uint32, bool) { return 0, false }
