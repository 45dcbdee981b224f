//go:build linux || darwin || freebsd

package server

import "syscall"

// freeBytes is the space unprivileged processes may still use on the
// file system of dir.
func freeBytes(dir string) (int64, bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return int64(st.Bavail) * int64(st.Bsize), true
}
