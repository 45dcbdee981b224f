// Package server runs the embedded stream backend (see package
// embedded): nats-server in-process with JetStream under the data
// directory, and the natsjs client connected to it in-process. Only
// binaries that offer stream.kind embedded import it.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream/embedded"
	"github.com/les-streams/les/internal/stream/natsjs"
)

// Stream is the embedded backend: a natsjs.Stream whose Close also stops
// the server.
type Stream struct {
	*natsjs.Stream
	srv *natsserver.Server
	log *slog.Logger
	// token is what clients must send ("" with auth none); auth.go.
	token string
}

// Deps is what code supplies.
type Deps struct {
	Log     *slog.Logger
	Metrics *selfmetric.Registry
}

// Open starts the server, storing under dataDir/jetstream, and connects
// to it in-process.
func Open(ctx context.Context, cfg embedded.Config, dataDir string, partitions int, deps Deps) (*Stream, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("stream.embedded: %w", err)
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	tok, err := authToken(cfg, dataDir) // auth.go
	if err != nil {
		return nil, err
	}
	cfg.Token = tok
	srv, err := start(&cfg, dataDir, deps.Log)
	if err != nil {
		return nil, err
	}
	st, err := natsjs.Open(ctx, natsjs.Config{URL: srv.ClientURL(), Name: cfg.Name, MaxAge: cfg.MaxAge,
		MaxBytes: cfg.MaxBytes, Duplicates: cfg.Duplicates, Token: cfg.Token},
		partitions, natsjs.Deps{Log: deps.Log, Metrics: deps.Metrics, Backend: "embedded",
			ConnOptions: []nats.Option{nats.InProcessServer(srv)}, SoleClient: true, StatePath: stateFile(dataDir)})
	if err != nil {
		srv.Shutdown()
		return nil, err
	}
	s := &Stream{Stream: st, srv: srv, log: deps.Log, token: tok}
	s.recoverCursors(ctx)
	return s, nil
}

func start(cfg *embedded.Config, dataDir string, log *slog.Logger) (*natsserver.Server, error) {
	host, portStr, _ := net.SplitHostPort(cfg.Listen)
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("stream.embedded.listen: bad port %q", portStr)
	}
	if err := checkListen(cfg.Listen, port); err != nil { // inuse.go
		return nil, err
	}
	if dataDir == "" {
		return nil, errors.New("stream: the embedded stream needs a data directory")
	}
	dir := filepath.Join(dataDir, "jetstream")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("stream: data dir: %w", err)
	}
	want := cfg.MaxBytes
	if want == 0 {
		want = 10 << 30 // natsjs' default
	}
	maxStore, err := fitStorage(dir, want, log)
	if err != nil {
		return nil, err
	}
	opts := &natsserver.Options{
		ServerName:         "les-embedded",
		Host:               host,
		Port:               port,
		JetStream:          true,
		StoreDir:           dir,
		NoSigs:             true,
		NoLog:              true,
		MaxPayload:         8 << 20,
		JetStreamMaxMemory: 64 << 20,
		// The account's limit above the stream's: the stream discards
		// its oldest records at its own limit, while the account's is a
		// hard one that would refuse publishes instead.
		JetStreamMaxStore: maxStore + maxStore/4 + 64<<20,
	}
	cfg.MaxBytes = maxStore // the stream's limit, fitted
	if cfg.Sync == "always" {
		opts.SyncAlways = true
	}
	if cfg.Token != "" {
		opts.Authorization = cfg.Token
	}
	srv, err := natsserver.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("stream: embedded server: %w", err)
	}
	if log != nil {
		srv.SetLogger(logger{log: log}, log.Enabled(context.Background(), slog.LevelDebug), false)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("stream: embedded server did not start listening on %s (port in use?)", cfg.Listen)
	}
	return srv, nil
}

// ClientURL is the address other processes use.
func (s *Stream) ClientURL() string { return s.srv.ClientURL() }

// Close drains the client and shuts the server down.
func (s *Stream) Close() error {
	err := s.Stream.Close()
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	return err
}
