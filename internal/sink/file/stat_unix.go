//go:build linux || darwin || freebsd

package file

import (
	"os"
	"syscall"
)

// statBuf is fstat's buffer, kept in the Sink so that the check before
// each append does not allocate.
type statBuf = syscall.Stat_t

func fdOf(f *os.File) int { return int(f.Fd()) }

// fstat returns the open file's size and whether it still has a name.
func fstat(_ *os.File, fd int, st *statBuf) (size int64, linked bool, err error) {
	if err := syscall.Fstat(fd, st); err != nil {
		return 0, false, err
	}
	return st.Size, st.Nlink > 0, nil
}
