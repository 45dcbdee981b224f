package wire_test

import (
	"context"
	"log/slog"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/embedded"
	embedsrv "github.com/les-streams/les/internal/stream/embedded/server"
	"github.com/les-streams/les/internal/wire"
)

// TestNodeConsumerTokenInURL: the example consumer works as the README
// shows it, NATS_URL=nats://TOKEN@127.0.0.1:4222 against an embedded
// stream that requires the token, with a record compressed as les
// compresses by default (zstd).
func TestNodeConsumerTokenInURL(t *testing.T) {
	node := nodeForExample(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const token = "s3cret-token"
	t.Setenv("LES_DATA_DIR", t.TempDir()) // no stream.creds: only the URL has the token
	s, err := embedsrv.Open(ctx, embedded.Config{Listen: "127.0.0.1:-1", Token: token}, t.TempDir(), 1, embedsrv.Deps{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := &model.Batch{Metrics: []model.Metric{{Name: "zstd.default", Value: 7, Timestamp: 1700000000000000000, Source: "fn-z", Kind: model.Gauge}}}
	e := wire.NewEncoder(wire.SignalMetrics)
	e.AppendBatch(b)
	data, err := e.Finish(nil, 0xabc, 1, wire.CompressionZstd)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(ctx, stream.Record{Origin: stream.OriginIngest, Signal: wire.SignalMetrics, ID: "abc-1", Data: data}); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(token)
	got, stderr := runExample(ctx, t, node, u.String(), "--from-start", "--limit", "1")
	if diff := cmp.Diff(jsonView(t, jsonlLines(b, wire.SignalMetrics)), jsonView(t, got)); diff != "" {
		t.Errorf("consume.js with NATS_URL=nats://TOKEN@… (-les tail +consume.js):\n%s\nstderr:\n%s", diff, stderr)
	}
}
