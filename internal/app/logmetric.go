package app

import (
	"cmp"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/les-streams/les/internal/consumer"
	"github.com/les-streams/les/internal/logmetric"
	"github.com/les-streams/les/internal/logmetric/pattern"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

// LogmetricConfig is the `logmetric:` section: the built-in consumer that
// reads the log records on the stream and publishes metric points derived
// from them (origin "derived"), which the rollup consumer rolls up.
type LogmetricConfig struct {
	// Disabled turns the consumer off.
	Disabled bool `yaml:"disabled"`
	// EMF decodes log messages that are Embedded Metric Format documents
	// (default true).
	EMF *bool `yaml:"emf"`
	// Lambda turns START/END/REPORT and timeout/error lines into
	// aws.lambda.* metrics (default true).
	Lambda *bool `yaml:"lambda"`
	// Filters are CloudWatch Logs metric filters.
	Filters []MetricFilterConfig `yaml:"filters"`
	// Tick is how often derived points are published (default 1s).
	Tick time.Duration `yaml:"tick"`
	// MaxPending bounds the points held between ticks (default 1048576).
	MaxPending int `yaml:"max_pending"`
	// NamespaceAs is where each filter's metric_namespace goes unless the
	// filter says otherwise: tag (default: the point carries
	// namespace=<metric_namespace>, as EMF points do) or prefix (the point
	// is named <metric_namespace>.<metric_name>, as CloudWatch → Wavefront
	// names it).
	NamespaceAs string `yaml:"namespace_as"`

	compiled []logmetric.Filter
}

// MetricFilterConfig is one CloudWatch metric filter: a filter pattern and
// its metric transformation.
type MetricFilterConfig struct {
	// Name labels les_logmetric_matched_total (default: metric_name).
	Name string `yaml:"name"`
	// Pattern is a CloudWatch Logs filter pattern.
	Pattern         string `yaml:"pattern"`
	MetricName      string `yaml:"metric_name"`
	MetricNamespace string `yaml:"metric_namespace"`
	// MetricValue: a number, $field, $N or $.path (default "1").
	MetricValue string `yaml:"metric_value"`
	// DefaultValue is emitted for each log record that does not match.
	DefaultValue *float64 `yaml:"default_value"`
	// Dimensions maps up to 3 names to $field, $N or $.path.
	Dimensions map[string]string `yaml:"dimensions"`
	// Unit is a CloudWatch unit, carried as tag "unit".
	Unit string `yaml:"unit"`
	// Kind of the points: counter (summed per window) or sample (rolled up
	// into a distribution). Default: counter for a literal metric_value,
	// sample for a value taken from the log.
	Kind string `yaml:"kind"`
	// NamespaceAs: tag or prefix (default logmetric.namespace_as).
	NamespaceAs string `yaml:"namespace_as"`
}

func (c *Config) validateLogmetric() []error {
	lm := &c.Logmetric
	var errs []error
	if lm.Tick == 0 {
		lm.Tick = time.Second
	}
	if lm.Tick < 0 {
		errs = append(errs, c.errAt("tick must be positive", "logmetric", "tick"))
	}
	if lm.MaxPending < 0 {
		errs = append(errs, c.errAt("max_pending must not be negative", "logmetric", "max_pending"))
	}
	switch lm.NamespaceAs {
	case "", logmetric.NamespaceTag, logmetric.NamespacePrefix:
	default:
		errs = append(errs, c.errAt(fmt.Sprintf("namespace_as %q is not one of tag, prefix", lm.NamespaceAs), "logmetric", "namespace_as"))
	}
	lm.compiled = nil
	names := map[string]bool{}
	for i := range lm.Filters {
		f := &lm.Filters[i]
		if f.MetricValue == "" {
			f.MetricValue = "1"
		}
		if f.Name == "" {
			f.Name = f.MetricName
		}
		if f.Name == "" {
			errs = append(errs, c.errAt("name or metric_name is required", "logmetric", "filters", i))
			continue
		}
		if names[f.Name] {
			errs = append(errs, c.errAt(fmt.Sprintf("duplicate filter name %q", f.Name), "logmetric", "filters", i, "name"))
		}
		names[f.Name] = true
		if _, err := pattern.Compile(f.Pattern); err != nil {
			errs = append(errs, c.errAt(err.Error(), "logmetric", "filters", i, "pattern"))
			continue
		}
		sel, err := pattern.CompileSelector(f.MetricValue)
		if err != nil {
			errs = append(errs, c.errAt(err.Error(), "logmetric", "filters", i, "metric_value"))
			continue
		}
		kind := model.Sample
		if sel.IsLiteral() {
			kind = model.Counter
		}
		switch f.Kind {
		case "":
		case "counter":
			kind = model.Counter
		case "sample":
			kind = model.Sample
		case "gauge":
			kind = model.Gauge
		default:
			errs = append(errs, c.errAt(fmt.Sprintf("kind %q is not one of counter, sample, gauge", f.Kind), "logmetric", "filters", i, "kind"))
			continue
		}
		mf, err := pattern.NewMetricFilter(f.Pattern, pattern.Transformation{
			MetricName: f.MetricName, MetricNamespace: f.MetricNamespace, MetricValue: f.MetricValue,
			DefaultValue: f.DefaultValue, Dimensions: f.Dimensions, Unit: f.Unit,
		})
		if err != nil {
			errs = append(errs, c.errAt(err.Error(), "logmetric", "filters", i))
			continue
		}
		nsAs := cmp.Or(f.NamespaceAs, lm.NamespaceAs, logmetric.NamespaceTag)
		if nsAs != logmetric.NamespaceTag && nsAs != logmetric.NamespacePrefix {
			errs = append(errs, c.errAt(fmt.Sprintf("namespace_as %q is not one of tag, prefix", f.NamespaceAs), "logmetric", "filters", i, "namespace_as"))
			continue
		}
		lm.compiled = append(lm.compiled, logmetric.Filter{Name: f.Name, Metric: mf, Kind: kind, NamespaceAs: nsAs})
	}
	return errs
}

// logmetricRunner builds the logmetric consumer, or returns nil when it is
// disabled: claimed (one processor per partition this process owns) where
// the rollup is (see claimProcessors).
func (a *App) logmetricRunner(st stream.Stream, comp wire.Compression) (runner, error) {
	lm := &a.cfg.Logmetric
	if lm.Disabled {
		return nil, nil
	}
	if len(lm.compiled) != len(lm.Filters) {
		return nil, errors.New("logmetric: config not validated")
	}
	newProc := func() (*logmetric.Processor, error) {
		return logmetric.New(logmetric.Config{
			Filters:    slices.Clone(lm.compiled),
			EMF:        lm.EMF == nil || *lm.EMF,
			Lambda:     lm.Lambda == nil || *lm.Lambda,
			MaxPending: lm.MaxPending,
		}, a.reg)
	}
	p, err := newProc()
	if err != nil {
		return nil, err
	}
	pc := consumer.ProcConfig{
		Name:           "logmetric",
		Origins:        []string{stream.OriginIngest},
		Signals:        []wire.Signal{wire.SignalLogs},
		Partitions:     a.parts,
		Origin:         stream.OriginDerived,
		AggOrigin:      stream.OriginAgg,
		CheckpointPath: filepath.Join(a.cfg.DataDir, "consumers", "logmetric.ckpt"),
		Tick:           lm.Tick,
		Compression:    comp,
		MaxRecordBytes: a.cfg.Agent.Batch.MaxBatchBytes,
	}
	if a.claimProcessors(st, pc.Name, pc.CheckpointPath) {
		return consumer.NewClaimRunner(pc, st, func(int) consumer.Processor {
			p, _ := newProc() // the config is valid: p was built from it
			return p
		}, a.reg, a.log)
	}
	return consumer.NewProcRunner(pc, st, p, a.reg, a.log)
}
