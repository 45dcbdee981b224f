// Package embedded is the default stream backend: a nats-server with
// JetStream file storage under the data directory, run inside the les
// process, and the natsjs client connected to it in-process. This package
// holds its configuration only; package embedded/server runs it, so that
// binaries that only read the configuration (the agent-only build for
// Lambda) do not link nats-server.
package embedded

import (
	"fmt"
	"net"
	"time"

	"github.com/les-streams/les/internal/stream/natsjs"
)

// Config is what users write under `stream.embedded:`.
type Config struct {
	// Listen is the client address other processes (les tail, les consume,
	// your consumers) use (default 127.0.0.1:4222; "127.0.0.1:-1" picks a
	// free port).
	Listen string `yaml:"listen"`
	// Token, when set, is required from every client (les tail --token,
	// your consumers); les itself connects in-process. It overrides Auth.
	Token string `yaml:"token"`
	// Auth is "creds" (default: without a Token, clients must send the
	// token kept in <data_dir>/stream.creds, generated at the first
	// start with mode 0600; les tail, les consume and the examples read
	// it from the data directory) or "none" (any local process may
	// connect, and purge or delete the stream).
	Auth string `yaml:"auth"`
	// Sync is "os" (default: every write reaches the OS before the
	// publish is acknowledged, so a crash of les loses nothing
	// acknowledged) or "always" (fsync every write: survives power loss,
	// slower).
	Sync string `yaml:"sync"`
	// Name, MaxAge, MaxBytes and Duplicates as for stream.nats.
	Name       string        `yaml:"name"`
	MaxAge     time.Duration `yaml:"max_age"`
	MaxBytes   int64         `yaml:"max_bytes"`
	Duplicates time.Duration `yaml:"duplicates"`
}

// Validate fills defaults and checks values; errors name the field under
// `stream.embedded`.
func (c *Config) Validate() error {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:4222"
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	switch c.Auth {
	case "", "creds":
		c.Auth = "creds"
	case "none":
	default:
		return fmt.Errorf("auth: %q is not one of creds, none", c.Auth)
	}
	switch c.Sync {
	case "", "os":
		c.Sync = "os"
	case "always":
	default:
		return fmt.Errorf("sync: %q is not one of os, always", c.Sync)
	}
	nc := natsjs.Config{Name: c.Name, MaxAge: c.MaxAge, MaxBytes: c.MaxBytes, Duplicates: c.Duplicates}
	return nc.Validate()
}
