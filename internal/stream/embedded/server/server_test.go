package server

import (
	"context"
	"log/slog"
	"testing"

	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/embedded"
	"github.com/les-streams/les/internal/stream/natsjs"
	"github.com/les-streams/les/internal/stream/streamtest"
	"github.com/les-streams/les/internal/wire"
)

var quiet = Deps{Log: slog.New(slog.DiscardHandler)}

func TestConformance(t *testing.T) {
	dirs := map[string]string{}
	streamtest.Run(t, func(t *testing.T) stream.Stream {
		dir, ok := dirs[t.Name()]
		if !ok {
			dir = t.TempDir()
			dirs[t.Name()] = dir
		}
		s, err := Open(context.Background(), embedded.Config{Listen: "127.0.0.1:-1"}, dir, streamtest.Partitions, quiet)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestToken: with a token, the embedded server refuses clients without
// it; les (in-process) and clients with it connect.
func TestToken(t *testing.T) {
	s, err := Open(context.Background(), embedded.Config{Listen: "127.0.0.1:-1", Token: "s3cret"}, t.TempDir(), 1, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Publish(context.Background(), stream.Record{Origin: stream.OriginIngest, Signal: wire.SignalMetrics, ID: "x", Data: []byte("x")}); err != nil {
		t.Fatalf("in-process publish with token: %v", err)
	}
	nd := natsjs.Deps{Log: quiet.Log, MustExist: true}
	if c, err := natsjs.Open(context.Background(), natsjs.Config{URL: s.ClientURL()}, 1, nd); err == nil {
		c.Close()
		t.Fatal("a client without the token connected")
	}
	c, err := natsjs.Open(context.Background(), natsjs.Config{URL: s.ClientURL(), Token: "s3cret"}, 1, nd)
	if err != nil {
		t.Fatalf("client with the token: %v", err)
	}
	c.Close()
}
