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
