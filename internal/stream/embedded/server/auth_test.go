package server

import (
	"context"
	"os"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/embedded"
	"github.com/les-streams/les/internal/wire"
)

// TestDefaultCredentials: without a token configured, the first start
// writes <data_dir>/stream.creds (mode 0600) and the server refuses
// anonymous clients, so a local process can neither read nor purge the
// stream; a client with the token from the file can; a restart keeps the
// token; auth none opens the port again.
func TestDefaultCredentials(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open(ctx, embedded.Config{Listen: "127.0.0.1:-1"}, dir, 1, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(ctx, stream.Record{Origin: stream.OriginIngest, Signal: wire.SignalMetrics, ID: "x", Data: []byte("x")}); err != nil {
		t.Fatalf("in-process publish: %v", err)
	}
	fi, err := os.Stat(embedded.CredsPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", embedded.CredsPath(dir), fi.Mode().Perm())
	}
	tok, err := embedded.ReadCreds(dir)
	if err != nil || len(tok) < 40 {
		t.Fatalf("token %q, %v", tok, err)
	}
	url := s.ClientURL()
	if nc, err := nats.Connect(url); err == nil {
		// Connected anonymously: show the damage it could do.
		js, _ := jetstream.New(nc)
		perr := js.DeleteStream(ctx, "LES")
		nc.Close()
		t.Fatalf("an anonymous client connected (delete stream: %v)", perr)
	}
	if nc, err := nats.Connect(url, nats.Token("wrong")); err == nil {
		nc.Close()
		t.Fatal("a client with a wrong token connected")
	}
	nc, err := nats.Connect(url, nats.Token(tok))
	if err != nil {
		t.Fatalf("client with the token from %s: %v", embedded.CredsFile, err)
	}
	js, _ := jetstream.New(nc)
	st, err := js.Stream(ctx, "LES")
	if err != nil {
		t.Fatal(err)
	}
	if info, err := st.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Fatalf("stream info with the token: %+v, %v", info, err)
	}
	nc.Close()
	s.Close()

	// A restart keeps the token.
	s, err = Open(ctx, embedded.Config{Listen: "127.0.0.1:-1"}, dir, 1, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := embedded.ReadCreds(dir); again != tok {
		t.Fatalf("token changed across restarts")
	}
	nc, err = nats.Connect(s.ClientURL(), nats.Token(tok))
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	nc.Close()
	s.Close()

	// auth: none, as before.
	s, err = Open(ctx, embedded.Config{Listen: "127.0.0.1:-1", Auth: "none"}, t.TempDir(), 1, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	nc, err = nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatalf("auth none: anonymous client: %v", err)
	}
	nc.Close()
}

// TestCredsFileTightened: a credentials file readable by others is made
// 0600 at start.
func TestCredsFileTightened(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(embedded.CredsPath(dir), []byte("token: abc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(embedded.CredsPath(dir), 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := embedded.EnsureCreds(dir)
	if err != nil || tok != "abc" {
		t.Fatalf("%q, %v", tok, err)
	}
	if fi, _ := os.Stat(embedded.CredsPath(dir)); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode().Perm())
	}
}
