//go:build !(linux || darwin || freebsd)

package file

import "os"

type statBuf struct{}

func fdOf(*os.File) int { return -1 }

// fstat returns the open file's size; whether it was deleted is not known
// here (the periodic path check notices it).
func fstat(f *os.File, _ int, _ *statBuf) (size int64, linked bool, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, false, err
	}
	return fi.Size(), true, nil
}
