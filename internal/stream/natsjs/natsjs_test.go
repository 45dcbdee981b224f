package natsjs

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/streamtest"
)

func TestEmbeddedConformance(t *testing.T) {
	dirs := map[string]string{}
	streamtest.Run(t, func(t *testing.T) stream.Stream {
		dir, ok := dirs[t.Name()]
		if !ok {
			dir = t.TempDir()
			dirs[t.Name()] = dir
		}
		s, err := Open(context.Background(), Config{Listen: "127.0.0.1:-1"}, dir, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestPublishTooLarge(t *testing.T) {
	s, err := Open(context.Background(), Config{Listen: "127.0.0.1:-1"}, t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	big := make([]byte, s.MaxPayload()+1)
	err = s.Publish(context.Background(), stream.Record{Subject: "les.in.metrics.0", ID: "big", Data: big})
	if !errors.Is(err, stream.ErrTooLarge) {
		t.Fatalf("publishing %d bytes: %v, want ErrTooLarge", len(big), err)
	}
}

// TestEmbeddedToken: with a token, the embedded server refuses clients
// without it; les (in-process) and clients with it connect.
func TestEmbeddedToken(t *testing.T) {
	s, err := Open(context.Background(), Config{Listen: "127.0.0.1:-1", Token: "s3cret"}, t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Publish(context.Background(), stream.Record{Subject: "les.in.metrics.0", ID: "x", Data: []byte("x")}); err != nil {
		t.Fatalf("in-process publish with token: %v", err)
	}
	if c, err := Dial(context.Background(), Config{URL: s.ClientURL()}, slog.New(slog.DiscardHandler)); err == nil {
		c.Close()
		t.Fatal("a client without the token connected")
	}
	c, err := Dial(context.Background(), Config{URL: s.ClientURL(), Token: "s3cret"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("client with the token: %v", err)
	}
	c.Close()
}
