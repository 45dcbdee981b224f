package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/les-streams/les/internal/app"
	"github.com/les-streams/les/internal/format/jsonl"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/wire"
)

var errLimit = errors.New("limit reached")

func cmdTail(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("les tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "read the stream this les.yaml configures (any kind); default: the embedded stream of a les up on this machine")
	url := fs.String("url", "", "NATS URL of the stream (les up prints it; default nats://127.0.0.1:4222)")
	token := fs.String("token", "", "the stream's token (stream.embedded.token); default: the one a les up keeps in <data dir>/stream.creds")
	dataDir := fs.String("data-dir", "", "the data directory of the les up whose stream to read, for its credentials (default $LES_DATA_DIR, else the config's data_dir, ./les-data)")
	fromStart := fs.Bool("from-start", false, "read from the first record instead of only new ones")
	limit := fs.Int("limit", 0, "stop after this many items (0: run until Ctrl-C)")
	untilEnd := fs.Bool("until-end", false, "exit once everything stored is printed (with --from-start; without it there is nothing before the end); kinds that cannot count what is left (kinesis) refuse it")
	logs := fs.Bool("logs", false, "only log records (same as --signal logs)")
	signals := fs.String("signal", "metrics,distributions,logs,spans", "comma-separated signals to show")
	origins := fs.String("origin", "in,agg,rollup,derived", "comma-separated origins: in (agent, as is), agg (raw input of the rollup), rollup, derived (logmetric), dlq")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	if *logs {
		*signals = "logs"
	}
	var sigs []wire.Signal
	for _, s := range strings.Split(*signals, ",") {
		sig, err := wire.ParseSignal(strings.TrimSpace(s))
		if err != nil {
			fmt.Fprintf(stderr, "les tail: %v\n", err)
			return 2
		}
		sigs = append(sigs, sig)
	}
	origs := strings.Split(*origins, ",")
	for i, o := range origs {
		origs[i] = strings.TrimSpace(o)
		if !stream.ValidOrigin(origs[i]) {
			fmt.Fprintf(stderr, "les tail: origin %q is not one of %s\n", o, strings.Join(stream.AllOrigins(), ", "))
			return 2
		}
	}
	cfg, err := app.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "les tail: %v\n", err)
		return 2
	}
	if *url != "" {
		cfg.Stream.Kind, cfg.Stream.NATS.URL = "nats", *url
	}
	if *token != "" {
		cfg.Stream.NATS.Token, cfg.Stream.Embedded.Token = *token, *token
	} else if err := useStreamCreds(cfg, dataDirOf(*dataDir, cfg)); err != nil { // creds.go
		fmt.Fprintf(stderr, "les tail: %v\n", err)
		return 1
	}
	st, err := app.OpenClient(ctx, cfg, backends(), slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Fprintf(stderr, "les tail: %v\n", err)
		return 1
	}
	defer st.Close()
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	var dec wire.Decoder
	var b model.Batch
	var buf []byte
	n := 0
	emit := func(line []byte) error {
		_, _ = w.Write(line)
		n++
		if *limit > 0 && n >= *limit {
			return errLimit
		}
		return nil
	}
	// tailRecords prints the items of ds; it returns errLimit once
	// --limit items are out.
	tailRecords := func(ds []stream.Delivery) error {
		o := jsonl.Options{}
		for _, d := range ds {
			b.Reset()
			if _, err := dec.Decode(&b, d.Data); err != nil {
				fmt.Fprintf(stderr, "les tail: record at %s/%s: %v\n", d.Partition, d.Pos, err)
				continue
			}
			for i := range b.Metrics {
				if err := emit(jsonl.AppendMetric(buf[:0], &b.Metrics[i], o)); err != nil {
					return err
				}
			}
			for i := range b.Dists {
				if err := emit(jsonl.AppendDistribution(buf[:0], &b.Dists[i], o)); err != nil {
					return err
				}
			}
			for i := range b.Logs {
				if err := emit(jsonl.AppendLog(buf[:0], &b.Logs[i], o)); err != nil {
					return err
				}
			}
			for i := range b.Spans {
				if err := emit(jsonl.AppendSpan(buf[:0], &b.Spans[i], o)); err != nil {
					return err
				}
			}
		}
		return nil
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	opts := stream.ConsumeOptions{Origins: origs, Signals: sigs, FromStart: *fromStart, Batch: 16}
	var end *endWatch
	if *untilEnd {
		if !*fromStart {
			return 0 // only new records, and the end is now: nothing to print
		}
		if end, err = newEndWatch(ctx, st, opts); err != nil {
			fmt.Fprintf(stderr, "les tail: --until-end: %v\n", err)
			return 1
		}
		if end.done {
			return 0 // the stream is empty
		}
		// Read every record, so that the positions seen say where the
		// end is; filter here (see endWatch).
		opts.Origins, opts.Signals, opts.Batch = nil, nil, 64
	}
	err = st.Consume(ctx, opts,
		func(ctx context.Context, ds []stream.Delivery) error {
			shown := ds
			if end != nil {
				shown = end.filter(ds)
			}
			err := tailRecords(shown)
			if errors.Is(err, errLimit) {
				stop() // Consume returns once the handler does
				err = nil
			}
			if ferr := w.Flush(); err == nil {
				err = ferr
			}
			if err == nil && end != nil && ctx.Err() == nil {
				switch atEnd, lerr := end.reached(ctx, ds); {
				case lerr != nil:
					err = fmt.Errorf("--until-end: %w", lerr)
				case atEnd:
					stop()
				}
			}
			return err
		})
	if err != nil {
		fmt.Fprintf(stderr, "les tail: %v\n", err)
		return 1
	}
	return 0
}

// endWatch tells les tail --until-end when it has read everything the
// stream holds. The stream contract has no "end position", but it counts
// what a consumer positioned after given positions has left (Stream.Lag).
// A backend may count records outside a consumer's origin and signal
// filters (one JetStream stream holds them all), so tail reads every
// record, shows only the wanted ones, and asks for the lag after the
// positions it has seen: 0 is the end. A stream written to faster than
// tail reads would not end; les publishes a few records per flush
// interval, which tail overtakes at once.
type endWatch struct {
	st   stream.Stream
	o    stream.ConsumeOptions
	seen map[string]stream.Position
	done bool // nothing to read at all
}

func newEndWatch(ctx context.Context, st stream.Stream, o stream.ConsumeOptions) (*endWatch, error) {
	e := &endWatch{st: st, o: o, seen: map[string]stream.Position{}}
	lag, err := st.Lag(ctx, stream.LagQuery{After: e.seen})
	if errors.Is(err, errors.ErrUnsupported) {
		return nil, fmt.Errorf("the %s stream cannot tell where its end is; use --limit or Ctrl-C", st.Capabilities().Backend)
	}
	if err != nil {
		return nil, err
	}
	e.done = lag == 0
	return e, nil
}

// filter returns the deliveries tail shows: those of the wanted origins
// and signals, in a new slice.
func (e *endWatch) filter(ds []stream.Delivery) []stream.Delivery {
	out := make([]stream.Delivery, 0, len(ds))
	for _, d := range ds {
		if e.o.Wants(d.Origin, d.Signal) {
			out = append(out, d)
		}
	}
	return out
}

// reached records the positions of ds and reports whether nothing is
// left after them.
func (e *endWatch) reached(ctx context.Context, ds []stream.Delivery) (bool, error) {
	for _, d := range ds {
		if stream.ComparePositions(d.Pos, e.seen[d.Partition]) > 0 {
			e.seen[d.Partition] = d.Pos
		}
	}
	lag, err := e.st.Lag(ctx, stream.LagQuery{After: e.seen})
	return lag == 0, err
}
