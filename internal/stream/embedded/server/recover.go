package server

import (
	"context"
	"path/filepath"
)

// stateFile is where the natsjs lost-range check keeps the stream's end
// between runs, next to the server's store.
func stateFile(dataDir string) string {
	return filepath.Join(dataDir, "jetstream", "les-stream-state.json")
}

// recoverCursors runs right after the server started and before les
// publishes anything: a stream the server cut at a damaged block file ends
// before the cursors of its consumers, which are moved back to its end
// (natsjs CheckCursors), and what was lost is reported. A failed check is
// logged, not fatal: the stream itself works.
func (s *Stream) recoverCursors(ctx context.Context) {
	if err := s.CheckCursors(ctx); err != nil {
		s.log.Warn("could not check the consumers' cursors against the stream", "err", err)
	}
}
