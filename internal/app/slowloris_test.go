package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/les-streams/les/internal/format/wavefront"
	"github.com/les-streams/les/internal/ingest"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream/mem"
)

// pipeListener is an in-memory net.Listener of net.Pipe connections, so
// that an http.Server runs in a synctest bubble.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

func (l *pipeListener) DialContext(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
	case <-ctx.Done():
	}
	client.Close()
	server.Close()
	return nil, net.ErrClosed
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// TestHTTPSlowlorisDoesNotHoldSlots runs the slowloris attack on the
// intake endpoints, scaled down from 20 attackers against max_concurrent
// 16 to 5 against 4, for a minute of fake time: each attacker announces a
// 1,000-byte body, sends one byte of it every 2 s, and starts again once
// les closes it. Meanwhile a valid client posts a line every 500 ms; each
// must be answered 2xx and its item be on the stream. Before bodies were
// read ahead of the slot, the attackers held every slot for the whole
// read_timeout and the valid requests were answered 503 after waiting 10 s.
func TestHTTPSlowlorisDoesNotHoldSlots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := mem.NewStore()
		st := mem.New(store, mem.Config{Partitions: 1})
		defer st.Close()
		reg := selfmetric.New()
		b, err := ingest.NewBatcher(ingest.BatchConfig{Compression: "none"}, st, reg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		cfg := &Config{}
		cfg.Agent.HTTP.MaxConcurrent = 4
		cfg.Agent.HTTP.ReadTimeout = time.Minute
		a := &App{cfg: cfg, reg: reg}
		mux := http.NewServeMux()
		mux.Handle("/report", &ingest.LineHandler{Formats: map[string]*ingest.HTTPFormat{"wavefront": {
			Intake: ingest.NewIntake("wavefront", "http", b, reg),
			NewDecoder: func() ingest.Decoder {
				return wavefront.NewDecoder(wavefront.Options{Mode: wavefront.ModeMetrics, Window: model.WindowNone})
			},
		}}, Default: "wavefront", Batcher: b})
		ln := &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
		srv := &http.Server{Handler: a.intakeLimit(mux), ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout: cfg.Agent.HTTP.ReadTimeout, IdleTimeout: 2 * time.Minute}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()

		attackEnd := time.Now().Add(time.Minute)
		var wg sync.WaitGroup
		var attacks atomic.Int64
		for range 5 {
			wg.Go(func() {
				for time.Now().Before(attackEnd) {
					c, err := ln.DialContext(context.Background(), "", "")
					if err != nil {
						return
					}
					attacks.Add(1)
					wg.Go(func() { _, _ = io.Copy(io.Discard, c) }) // les' answer, until it closes
					_, err = io.WriteString(c, "POST /report HTTP/1.1\r\nHost: les\r\nContent-Length: 1000\r\n\r\n")
					for err == nil && time.Now().Before(attackEnd) {
						_, err = c.Write([]byte("x"))
						time.Sleep(2 * time.Second)
					}
					c.Close()
				}
			})
		}
		time.Sleep(3 * time.Second) // every slot would be taken by now

		tr := &http.Transport{DialContext: ln.DialContext}
		client := &http.Client{Transport: tr}
		sent, ok := 0, 0
		codes := map[int]int{}
		for i := 0; time.Now().Before(attackEnd); i++ {
			sent++
			resp, err := client.Post("http://les/report", "text/plain", strings.NewReader(fmt.Sprintf("valid.m %d source=fn\n", i)))
			if err != nil {
				codes[-1]++
			} else {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				codes[resp.StatusCode]++
				if resp.StatusCode/100 == 2 {
					ok++
				}
			}
			time.Sleep(500 * time.Millisecond)
		}
		wg.Wait()
		tr.CloseIdleConnections()
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
		<-served
		items := 0
		for range store.Records() {
			items++ // one item per request (a record each)
		}
		slow := reg.Counter("les_ingest_http_refused_total", "reason", ingest.RefusedSlowBody).Get()
		t.Logf("attack: %d slow requests (%d answered 408); valid: %d sent, answers %v, %d records on the stream",
			attacks.Load(), slow, sent, codes, items)
		if ok != sent || items != sent {
			t.Fatalf("valid traffic during the attack: %d of %d answered 2xx (%v), %d on the stream", ok, sent, codes, items)
		}
		if slow == 0 {
			t.Fatal("no slow body was cut off")
		}
	})
}
