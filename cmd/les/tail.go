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

	"github.com/les-streams/les/internal/format/jsonl"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/natsjs"
	"github.com/les-streams/les/internal/wire"
)

var errLimit = errors.New("limit reached")

func cmdTail(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("les tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "nats://127.0.0.1:4222", "NATS URL of the stream (les up prints it)")
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
	subjects := stream.SubjectsFor(strings.Split(*origins, ","), sigs)
	st, err := natsjs.Dial(ctx, natsjs.Config{URL: *url, Token: *token}, slog.New(slog.DiscardHandler))
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
	err = st.Consume(ctx, stream.ConsumeOptions{Subjects: subjects, FromStart: *fromStart, Batch: 16},
		func(ctx context.Context, ds []stream.Delivery) error {
			for _, d := range ds {
				b.Reset()
				h, err := dec.Decode(&b, d.Data)
				if err != nil {
					fmt.Fprintf(stderr, "les tail: record %d: %v\n", d.Seq, err)
					continue
				}
				o := jsonl.Options{}
				_ = h
				emit := func(line []byte) error {
					_, _ = w.Write(line)
					n++
					if *limit > 0 && n >= *limit {
						return errLimit
					}
					return nil
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
			return w.Flush()
		})
	if err != nil && !errors.Is(err, errLimit) {
		fmt.Fprintf(stderr, "les tail: %v\n", err)
		return 1
	}
	return 0
}
