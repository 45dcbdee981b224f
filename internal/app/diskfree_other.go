//go:build !unix

package app

// diskFree is unknown on this system.
func diskFree(string) (uint64, bool) { return 0, false }
