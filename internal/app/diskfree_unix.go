//go:build unix

package app

import "syscall"

// diskFree reports the bytes available to les on dir's file system.
func diskFree(dir string) (uint64, bool) {
	var st syscall.Statfs_t
	if dir == "" || syscall.Statfs(dir, &st) != nil {
		return 0, false
	}
	return st.Bavail * uint64(st.Bsize), true
}
