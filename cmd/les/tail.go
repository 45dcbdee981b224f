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
	token := fs.String("token", "", "the stream's token (stream.token), when it requires one")
	fromStart := fs.Bool("from-start", false, "read from the first record instead of only new ones")
	limit := fs.Int("limit", 0, "stop after this many items (0: run until Ctrl-C)")
	logs := fs.Bool("logs", false, "only log records (same as --signal logs)")
	signals := fs.String("signal", "metrics,distributions,logs,spans", "comma-separated signals to show")
	origins := fs.String("origin", "in,agg,rollup,derived", "comma-separated origins: in (agent, as is), agg (raw input of the rollup), rollup, derived (logmetric), dlq")
	if err := fs.Parse(args); err != nil {
		return 2
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
	err = st.Consume(ctx, stream.ConsumeOptions{Origins: origs, Signals: sigs, FromStart: *fromStart, Batch: 16},
		func(ctx context.Context, ds []stream.Delivery) error {
			err := tailRecords(ds)
			if errors.Is(err, errLimit) {
				stop() // Consume returns once the handler does
				err = nil
			}
			if ferr := w.Flush(); err == nil {
				err = ferr
			}
			return err
		})
	if err != nil {
		fmt.Fprintf(stderr, "les tail: %v\n", err)
		return 1
	}
	return 0
}
