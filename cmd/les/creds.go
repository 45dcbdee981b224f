package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/les-streams/les/internal/app"
	"github.com/les-streams/les/internal/stream/embedded"
)

// dataDirOf is the data directory a command uses: --data-dir, else
// LES_DATA_DIR, else the config's data_dir (default ./les-data).
func dataDirOf(flagValue string, cfg *app.Config) string {
	dir := flagValue
	if dir == "" {
		dir = os.Getenv("LES_DATA_DIR")
	}
	if dir == "" {
		return cfg.DataDir
	}
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}

// useStreamCreds gives a client of a les up's embedded stream the token
// that les up keeps in <data dir>/stream.creds, so that les tail and
// les consume need no flag: for stream.kind embedded without
// stream.embedded.token, and for kind nats without credentials configured
// (the embedded stream of a les up read as NATS). A missing file leaves
// cfg as it is. A configured token always wins.
func useStreamCreds(cfg *app.Config, dataDir string) error {
	s := &cfg.Stream
	switch {
	case s.Kind == "embedded" && s.Embedded.Token == "":
	case s.Kind == "nats" && s.NATS.Token == "" && s.NATS.User == "" && s.NATS.CredsFile == "":
	default:
		return nil
	}
	tok, err := embedded.ReadCreds(dataDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	s.Embedded.Token = tok
	if s.Kind == "nats" {
		s.NATS.Token = tok
	}
	return nil
}
