package server

import (
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
)

// minStreamBytes is the least max_bytes worth starting with.
const minStreamBytes = 1 << 20

// fitStorage fits the stream's max_bytes to the file system under dir:
// what the stream already stores there plus the space still free, less a
// little headroom for les' other files (spool, checkpoints). nats-server
// itself refuses a stream whose max_bytes exceeds 75% of the free space
// ("insufficient storage resources available"), which on a full disk
// would keep les from starting at all, even to serve what is stored; so
// the server's store limit is set to the fitted value. A WARN names the
// setting and the numbers when it lowers max_bytes; when not even
// minStreamBytes fit an empty stream, the error says so.
func fitStorage(dir string, maxBytes int64, log *slog.Logger) (int64, error) {
	free, ok := freeBytes(dir)
	if !ok {
		return maxBytes, nil // unknown on this platform: leave it to the server
	}
	used := duBytes(dir)
	headroom := min(free/10, 64<<20)
	budget := used + free - headroom
	if maxBytes <= budget {
		return maxBytes, nil
	}
	if budget < minStreamBytes && used == 0 {
		return 0, fmt.Errorf("stream.embedded.max_bytes: %s has %d bytes free and the stream stores %d: "+
			"not enough for a stream (at least %d); free space on that file system or move data_dir", dir, free, used, minStreamBytes)
	}
	// On a full disk the stream keeps what it stores (served to
	// consumers); publishes wait for space.
	budget = max(budget, used, minStreamBytes)
	log.Warn("stream.embedded.max_bytes does not fit the free space of data_dir: using less (the oldest records go first when it is reached)",
		"setting", "stream.embedded.max_bytes", "configured_bytes", maxBytes, "free_bytes", free,
		"stream_stores_bytes", used, "using_bytes", budget, "dir", dir)
	return budget, nil
}

// duBytes is the size of the files under dir.
func duBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
