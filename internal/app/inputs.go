package app

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/les-streams/les/internal/ingest"
	"github.com/les-streams/les/internal/input/kinesis"
)

// InputsConfig is the `inputs:` section: components that pull data from
// outside les (intake that les does not listen for).
type InputsConfig struct {
	// Kinesis streams carrying CloudWatch Logs subscription payloads.
	Kinesis []KinesisInputConfig `yaml:"kinesis"`
}

// KinesisInputConfig is one entry of `inputs.kinesis`.
type KinesisInputConfig struct {
	// Name identifies the input; its checkpoint is
	// <data_dir>/inputs/kinesis-<name>.json.
	Name           string `yaml:"name"`
	kinesis.Config `yaml:",inline"`
}

func (c *Config) validateInputs() []error {
	var errs []error
	names := map[string]bool{}
	for i := range c.Inputs.Kinesis {
		k := &c.Inputs.Kinesis[i]
		switch {
		case k.Name == "":
			errs = append(errs, c.errAt("name is required", "inputs", "kinesis", i))
		case names[k.Name]:
			errs = append(errs, c.errAt(fmt.Sprintf("duplicate kinesis input name %q", k.Name), "inputs", "kinesis", i, "name"))
		case !validName(k.Name):
			errs = append(errs, c.errAt(fmt.Sprintf("name %q may only contain letters, digits, '-' and '_'", k.Name), "inputs", "kinesis", i, "name"))
		}
		names[k.Name] = true
		if err := k.Config.Validate(); err != nil {
			all := []error{err}
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				all = j.Unwrap()
			}
			for _, e := range all {
				if fe, ok := errors.AsType[*kinesis.FieldError](e); ok {
					errs = append(errs, c.errAt(fe.Msg, "inputs", "kinesis", i, fe.Field))
				} else {
					errs = append(errs, c.errAt(e.Error(), "inputs", "kinesis", i))
				}
			}
		}
	}
	return errs
}

// inputRunners builds the configured inputs. They publish through b
// synchronously (PublishNow), so a checkpoint only moves past logs that are
// durable on the stream. It does no I/O.
func (a *App) inputRunners(b *ingest.Batcher, info *Info) ([]runner, error) {
	var out []runner
	for _, k := range a.cfg.Inputs.Kinesis {
		p, err := kinesis.New(k.Config, kinesis.Deps{
			Log:            a.log.With("input", "kinesis-"+k.Name),
			Metrics:        a.reg,
			Publish:        b.PublishNow,
			CheckpointPath: filepath.Join(a.cfg.DataDir, "inputs", "kinesis-"+k.Name+".json"),
		})
		if err != nil {
			return nil, fmt.Errorf("input kinesis %s: %w", k.Name, err)
		}
		out = append(out, p)
		info.Listeners = append(info.Listeners, fmt.Sprintf("%-16s %-8s %s", k.Format, "kinesis", k.Stream))
	}
	return out, nil
}
