package server

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/embedded"
)

// TestSmallDisk runs on a real 64 MiB tmpfs, mounted in a private mount
// namespace (the test binary re-runs itself under unshare -m), so it needs
// root; elsewhere it is skipped. With the default max_bytes (10 GiB) les
// starts, fitting the stream to the file system with a WARN naming the
// setting (before: "insufficient storage resources available"); after the
// disk was filled to the last byte by another file, les starts again and
// serves what the stream stores.
func TestSmallDisk(t *testing.T) {
	if os.Getenv("LES_TEST_IN_NS") == "" {
		missing := t.Skip
		if os.Getenv("CI") != "" {
			missing = t.Fatal // CI runs as root with util-linux (scripts/test.sh)
		}
		if os.Getuid() != 0 {
			missing("needs root to mount a tmpfs in a private mount namespace")
		}
		unshare, err := exec.LookPath("unshare")
		if err != nil {
			missing("unshare not found")
		}
		cmd := exec.Command(unshare, "-m", "--propagation", "private", os.Args[0], "-test.run=^TestSmallDisk$", "-test.v")
		cmd.Env = append(os.Environ(), "LES_TEST_IN_NS=1")
		out, err := cmd.CombinedOutput()
		t.Logf("in a private mount namespace:\n%s", out)
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	defer syscall.Unmount(dir, syscall.MNT_DETACH)

	logs := &logRecorder{}
	cfg := embedded.Config{Listen: "127.0.0.1:-1"} // max_bytes: the 10 GiB default
	s, err := Open(context.Background(), cfg, dir, 1, Deps{Log: slog.New(logs)})
	if err != nil {
		t.Fatalf("les did not start on a 64 MiB disk: %v", err)
	}
	a, ok := logs.find(slog.LevelWarn, "stream.embedded.max_bytes does not fit")
	if !ok || a["setting"] != "stream.embedded.max_bytes" || a["free_bytes"] == "" {
		logs.dump(t)
		t.Fatal("no WARN naming stream.embedded.max_bytes and the free bytes")
	}
	t.Logf("fitted: %v", a)
	publishN(t, s, "a", 100)
	s.Close()

	// Fill the disk.
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	for n := len(buf) / 2; n > 0; n /= 2 { // the last bytes
		_, _ = f.Write(buf[:n])
	}
	f.Close()

	s, err = Open(context.Background(), cfg, dir, 1, Deps{Log: slog.New(logs)})
	if err != nil {
		t.Fatalf("les did not start again on the full disk: %v", err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n := 0
	_ = s.Consume(ctx, stream.ConsumeOptions{FromStart: true}, func(_ context.Context, ds []stream.Delivery) error {
		if n += len(ds); n >= 100 {
			cancel()
		}
		return nil
	})
	if n != 100 {
		t.Fatalf("read %d stored records on the full disk, want 100", n)
	}
}
