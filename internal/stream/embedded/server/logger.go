package server

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// logger is a nats-server Logger writing to les' slog: the server's
// warnings and errors (a damaged block file, storage full, lost data)
// reach les' log at WARN and ERROR; its notices, which are start-up
// banners mostly, at DEBUG, as are debug and trace lines.
type logger struct{ log *slog.Logger }

var _ natsserver.Logger = logger{}

func (l logger) Noticef(format string, v ...any) { l.emit(slog.LevelDebug, format, v) }
func (l logger) Warnf(format string, v ...any)   { l.emit(slog.LevelWarn, format, v) }
func (l logger) Errorf(format string, v ...any)  { l.emit(slog.LevelError, format, v) }

// Fatalf: with a custom logger the server does not exit; it stops the
// failing part and les reports what depends on it.
func (l logger) Fatalf(format string, v ...any) { l.emit(slog.LevelError, format, v) }
func (l logger) Debugf(format string, v ...any) { l.emit(slog.LevelDebug, format, v) }
func (l logger) Tracef(format string, v ...any) { l.emit(slog.LevelDebug-4, format, v) }

func (l logger) emit(level slog.Level, format string, v []any) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	l.log.Log(ctx, level, strings.TrimSpace(fmt.Sprintf(format, v...)), "component", "nats-server")
}
