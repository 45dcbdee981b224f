package app

import (
	"fmt"

	"github.com/les-streams/les/internal/sink"
	"github.com/les-streams/les/internal/sink/discard"
	"github.com/les-streams/les/internal/sink/file"
	wfsink "github.com/les-streams/les/internal/sink/wavefront"
)

// Backend settings as they appear under each sink's type key.
type (
	fileSinkConfig      = file.Config
	wavefrontSinkConfig = wfsink.Config
	discardSinkConfig   = discard.Config
)

// sinkTypes is the explicit table of sink types: adding a sink is one
// folder under internal/sink, one field in SinkConfig and one line here.
var sinkTypes = map[string]struct {
	validate func(c *SinkConfig) error
	build    func(c *SinkConfig) (sink.Sink, error)
}{
	"file": {
		validate: func(c *SinkConfig) error {
			return need(c.File != nil, "file").or(func() error { return c.File.Validate() })
		},
		build: func(c *SinkConfig) (sink.Sink, error) { return file.New(*c.File) },
	},
	"wavefront": {
		validate: func(c *SinkConfig) error {
			return need(c.Wavefront != nil, "wavefront").or(func() error { return c.Wavefront.Validate() })
		},
		build: func(c *SinkConfig) (sink.Sink, error) { return wfsink.New(*c.Wavefront) },
	},
	"discard": {
		validate: func(c *SinkConfig) error {
			if c.Discard == nil {
				c.Discard = &discard.Config{}
			}
			return c.Discard.Validate()
		},
		build: func(c *SinkConfig) (sink.Sink, error) { return discard.New(*c.Discard) },
	},
}

type check struct{ err error }

func need(ok bool, key string) check {
	if ok {
		return check{}
	}
	return check{fmt.Errorf("settings under %q are required for this type", key)}
}

func (c check) or(next func() error) error {
	if c.err != nil {
		return c.err
	}
	return next()
}

func (c *Config) validateSink(i int) []error {
	s := &c.Sinks[i]
	t, ok := sinkTypes[s.Type]
	if !ok {
		return []error{c.errAt(fmt.Sprintf("type %q is not one of discard, file, wavefront", s.Type), "sinks", i, "type")}
	}
	others := map[string]bool{"file": s.File != nil, "wavefront": s.Wavefront != nil, "discard": s.Discard != nil}
	var errs []error
	for k, set := range others {
		if set && k != s.Type {
			errs = append(errs, c.errAt(fmt.Sprintf("settings for %q given on a sink of type %q", k, s.Type), "sinks", i, k))
		}
	}
	if err := t.validate(s); err != nil {
		errs = append(errs, c.errAt(err.Error(), "sinks", i, s.Type))
	}
	return errs
}

func (a *App) newSink(s *SinkConfig) (sink.Sink, error) {
	return sinkTypes[s.Type].build(s)
}
