package consumer

import (
	"os"
	"path/filepath"
	"testing"
)

// damageBlock overwrites 4 KiB in the middle of the embedded stream's
// first block file (les stopped).
func damageBlock(t *testing.T, dataDir string) {
	t.Helper()
	blk := filepath.Join(dataDir, "jetstream", "jetstream", "$G", "streams", "LES", "msgs", "1.blk")
	f, err := os.OpenFile(blk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	junk := make([]byte, 4096)
	for i := range junk {
		junk[i] = 0xAB
	}
	if _, err := f.WriteAt(junk, st.Size()/2-2048); err != nil {
		t.Fatal(err)
	}
}

// TestProcRunnerAfterDamagedBlock: the stream is cut below a processor's
// checkpointed position by a damaged block file; the records published
// after the restart reuse those sequences and must be folded in — exactly
// once. Before the fix the processor skipped them as already folded.
func TestProcRunnerAfterDamagedBlock(t *testing.T) {
	dir := t.TempDir()
	ckpt := filepath.Join(dir, "count.ckpt")
	st := openStream(t, dir)
	publishMetrics(t, st, 0, 300, 10)
	p1 := &countProc{}
	runProc(t, st, ckpt, p1, func() bool { return p1.total == 3000 })
	st.Close()
	damageBlock(t, dir)

	st = openStream(t, dir)
	defer st.Close()
	publishMetrics(t, st, 300, 50, 10)
	p2 := &countProc{}
	runProc(t, st, ckpt, p2, func() bool { return p2.total >= 3500 })
	if p2.total != 3500 {
		t.Fatalf("folded %v samples in total, want exactly 3500", p2.total)
	}
}
