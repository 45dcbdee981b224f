package main

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/les-streams/les/internal/ingest"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream/embedded"
	embedsrv "github.com/les-streams/les/internal/stream/embedded/server"
)

// TestTailFindsStreamCreds: les up's embedded stream requires the token
// it wrote to <data_dir>/stream.creds; les tail finds it with nothing
// typed — in ./les-data, in $LES_DATA_DIR or with --data-dir — and
// without it (another data dir) or with a wrong --token it is refused.
func TestTailFindsStreamCreds(t *testing.T) {
	work := t.TempDir()
	dataDir := filepath.Join(work, "les-data")
	ctx := context.Background()
	st, err := embedsrv.Open(ctx, embedded.Config{Listen: "127.0.0.1:-1"}, dataDir, 1, embedsrv.Deps{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	b, err := ingest.NewBatcher(ingest.BatchConfig{Compression: "none"}, st, selfmetric.New(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var batch model.Batch
	batch.Metrics = append(batch.Metrics, model.Metric{Name: "creds.test", Value: 1, Source: "fn", Timestamp: 1e18})
	if err := b.PublishNow(ctx, &batch); err != nil {
		t.Fatal(err)
	}
	tail := func(args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		code := cmdTail(ctx, append([]string{"--url", st.ClientURL(), "--from-start", "--limit", "1"}, args...), nil, &out, &errb)
		return out.String(), errb.String(), code
	}
	t.Chdir(work)
	t.Setenv("LES_DATA_DIR", "")
	if out, errs, code := tail(); code != 0 || !strings.Contains(out, "creds.test") {
		t.Fatalf("les tail in the directory of les-data: exit %d, %q, %s", code, out, errs)
	}
	t.Chdir(t.TempDir())
	t.Setenv("LES_DATA_DIR", dataDir)
	if out, errs, code := tail(); code != 0 || !strings.Contains(out, "creds.test") {
		t.Fatalf("les tail with LES_DATA_DIR: exit %d, %q, %s", code, out, errs)
	}
	t.Setenv("LES_DATA_DIR", "")
	if out, errs, code := tail("--data-dir", dataDir); code != 0 || !strings.Contains(out, "creds.test") {
		t.Fatalf("les tail --data-dir: exit %d, %q, %s", code, out, errs)
	}
	if _, errs, code := tail(); code == 0 || !strings.Contains(strings.ToLower(errs), "authorization") {
		t.Fatalf("les tail without the credentials: exit %d, %s; want an authorization error", code, errs)
	}
	if _, errs, code := tail("--data-dir", dataDir, "--token", "wrong"); code == 0 {
		t.Fatalf("les tail --token wrong: exit %d, %s; the flag must override the file", code, errs)
	}
}
