// Package app builds les' component graph from a Config, runs it, and owns
// the shutdown order: intake stops first, open batches are published, the
// consumers catch up for a moment, then the stream closes.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/les-streams/les/internal/consumer"
	"github.com/les-streams/les/internal/format/otlp"
	"github.com/les-streams/les/internal/format/wavefront"
	"github.com/les-streams/les/internal/ingest"
	"github.com/les-streams/les/internal/ingest/wfhttp"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/sink"
	"github.com/les-streams/les/internal/stream"
)

// Info describes a running les, for the start-up banner.
type Info struct {
	Mode      Mode
	DataDir   string
	Stream    string // backend
	StreamURL string
	HTTP      string
	Listeners []string
	Sinks     []string
}

// Mode says which halves a process runs.
type Mode int

const (
	// ModeUp runs both halves (les up).
	ModeUp Mode = iota
	// ModeAgent runs the front half only: listeners → batches → stream (les agent).
	ModeAgent
	// ModeConsume runs the back half only: rollup, logmetric, sinks (les consume).
	ModeConsume
)

func (m Mode) String() string {
	return [...]string{"up", "agent", "consume"}[m]
}

// Options are what the binary decides, not the config file.
type Options struct {
	Mode Mode
	// Backends are the stream backends this binary offers (see Backend).
	Backends []Backend
	// Partitions assigns logical partitions to this process's consumers
	// (les consume --partitions); nil means all.
	Partitions []int
}

// App is one les process: agent, stream and consumers.
type App struct {
	cfg      *Config
	log      *slog.Logger
	reg      *selfmetric.Registry
	mode     Mode
	backends []Backend
	parts    []int
	// sinkHTTP is the HTTP client network sinks share.
	sinkHTTP *http.Client
	// otlpState is shared by the OTLP listeners (otlp.go).
	otlpOnce  sync.Once
	otlpState *otlp.Deltas
	// gate refuses intake while nothing can be stored (health.go); set by
	// Run before the listeners are bound.
	gate *ingest.StoreGate
	// selfHist keeps the last hour of the Pipeline page's self-metrics.
	selfHist *selfHistory
	// linePort is the HTTP side of the unified Wavefront line ports
	// (lineport.go); set by Run.
	linePort lateHandler
}

// New returns an app for cfg (already validated by Load). It does no I/O.
func New(cfg *Config, log *slog.Logger, o Options) *App {
	return &App{cfg: cfg, log: log, reg: selfmetric.New(), mode: o.Mode, backends: o.Backends, parts: o.Partitions,
		sinkHTTP: &http.Client{Transport: sink.NewTransport()}}
}

func (a *App) agent() bool     { return a.mode != ModeConsume }
func (a *App) consumers() bool { return a.mode != ModeAgent }

// Registry exposes the self-metrics (for tests and benchmarks).
func (a *App) Registry() *selfmetric.Registry { return a.reg }

// drainTimeout bounds each stage of the batcher's part of the shutdown:
// waiting for listeners blocked on the publish queue, then publishing what
// is queued and open before the rest is spooled.
const drainTimeout = 10 * time.Second

type runner interface {
	Run(ctx context.Context) error
}

// Run starts everything, calls ready once all listeners are bound, and
// blocks until ctx is cancelled; then it shuts down in order.
func (a *App) Run(ctx context.Context, ready func(Info)) error {
	cfg := a.cfg
	a.reg.Rejects().Redact(cfg.Agent.HTTP.Token) // rejected.go: never shown in the rejected inputs
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	unlock, err := lockDataDir(cfg.DataDir) // lock_unix.go
	if err != nil {
		return err
	}
	defer unlock()
	if a.mode == ModeAgent && cfg.Stream.Kind == "embedded" {
		return errors.New("les agent publishes to a stream other processes read: set stream.kind to nats, kafka or kinesis (or run les up, which embeds the stream)")
	}
	if a.mode == ModeConsume && cfg.Stream.Kind == "embedded" {
		return errors.New("les consume reads a stream other processes write: set stream.kind to nats, kafka or kinesis (a les up's embedded stream is stream.kind nats with url nats://127.0.0.1:4222)")
	}
	st, err := a.openStream(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	caps := st.Capabilities()
	// A batch is cut once it reaches max_batch_bytes, so one more item may
	// follow: keep batches at most half the largest record the stream
	// takes (1 MiB by default on an external nats-server) so every record
	// fits.
	if mp := caps.MaxRecordBytes; mp > 0 && int64(cfg.Agent.Batch.MaxBatchBytes) > mp/2 {
		a.log.Info("lowering agent.batch.max_batch_bytes to half the stream's largest record",
			"configured", cfg.Agent.Batch.MaxBatchBytes, "max_record_bytes", mp)
		cfg.Agent.Batch.MaxBatchBytes = int(mp / 2)
	}
	info := Info{DataDir: cfg.DataDir, StreamURL: st.ClientURL(), Stream: caps.Backend, Mode: a.mode}

	// The agent's publishes go through pub, which remembers whether the
	// stream takes them (/readyz, health.go).
	pub := watchPublish(st)
	batcher, err := ingest.NewBatcher(cfg.Agent.Batch, pub, a.reg, a.log)
	if err != nil {
		return err
	}
	spoolCfg := cfg.Agent.Spool
	if spoolCfg.Dir == "" {
		spoolCfg.Dir = filepath.Join(cfg.DataDir, "spool")
	}
	spool, err := ingest.OpenSpool(spoolCfg, pub, a.reg, a.log)
	if err != nil {
		return err
	}
	batcher.SetSpool(spool)
	spoolCtx, cancelSpool := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSpool()
	go spool.Run(spoolCtx)
	// Intake is refused while neither the stream nor the spool can store
	// (health.go): HTTP 503, TCP/UDP items dropped as disk_full.
	rd := &readiness{pub: pub, spool: spool, spoolReserve: int64(cfg.Agent.Batch.MaxBatchBytes),
		dataDir: cfg.DataDir, minFree: minFreeBytes(cfg.Agent.Batch.MaxBatchBytes), streamOnDisk: cfg.Stream.Kind == "embedded"}
	a.gate = ingest.NewStoreGate(rd.cannotStore, 100*time.Millisecond)

	// Bind every socket before starting anything, so conflicts fail fast.
	// Until intake starts, a return releases the sockets already bound.
	var listeners, sockets []runner
	var httpLn net.Listener
	intakeStarted := false
	defer func() {
		if intakeStarted {
			return
		}
		if httpLn != nil {
			_ = httpLn.Close()
		}
		stopped, stop := context.WithCancel(context.Background())
		stop()
		for _, r := range sockets {
			_ = r.Run(stopped) // with ctx done, Run closes the socket and returns
		}
	}()
	listenerCfgs := cfg.Agent.Listeners
	if !a.agent() {
		listenerCfgs = nil
	}
	for i, l := range listenerCfgs {
		r, addr, err := a.bind(l, batcher)
		if err != nil {
			return bindError(fmt.Sprintf("agent.listeners[%d]", i), l.Address+"/"+l.Transport, err) // bindmsg.go
		}
		sockets = append(sockets, r)
		info.Listeners = append(info.Listeners, fmt.Sprintf("%-16s %-8s %s", l.Format, l.Transport, addr))
	}
	listeners = append(listeners, sockets...)
	if a.agent() {
		inputs, err := a.inputRunners(batcher, &info)
		if err != nil {
			return err
		}
		listeners = append(listeners, inputs...)
	}
	httpLn, err = net.Listen("tcp", cfg.Agent.HTTP.Listen)
	if err != nil {
		return bindError("agent.http.listen", cfg.Agent.HTTP.Listen, err)
	}
	info.HTTP = httpLn.Addr().String()

	var procs []runner
	a.selfHist = newSelfHistory(a.reg) // selfhistory.go: the Pipeline page's last hour
	procs = append(procs, a.selfHist)
	var rollupRun runner
	var eachRollup func(func(*rollupProc)) // rollup.go: every rollup engine of this process
	var hist *historyStore                 // history.go: the closed windows /query and the UI read
	if !cfg.Rollup.Disabled && a.consumers() {
		rc, _ := cfg.Rollup.engineConfig()
		rollupRun, eachRollup, err = a.rollupRunner(st, rc, batcher.Compression())
		if err != nil {
			return err
		}
		procs = append(procs, rollupRun)
		hist = newHistoryStore(st, a.parts, rc.Percentiles, cfg.UI.History.historyConfig(), a.reg, a.log)
		procs = append(procs, hist)
		a.reg.Gauge("les_rollup_series_rejected_total", func() float64 {
			var n uint64
			eachRollup(func(p *rollupProc) { n += p.Stats().SeriesRejected })
			return float64(n)
		})
		a.reg.Gauge("les_rollup_late_samples_total", func() float64 {
			var n uint64
			eachRollup(func(p *rollupProc) { n += p.Stats().LateSamples })
			return float64(n)
		})
	}

	if a.consumers() {
		lmRun, err := a.logmetricRunner(st, batcher.Compression())
		if err != nil {
			return err
		}
		if lmRun != nil {
			procs = append(procs, lmRun)
		}
	}
	var errLogs *errorLogs // errorlogs.go: recent error-level logs per source, for the UI
	if a.consumers() && !cfg.UI.ErrorLogs.Disabled {
		errLogs = newErrorLogs(cfg.UI.ErrorLogs, st, a.parts, a.reg, a.log)
		procs = append(procs, errLogs)
	}

	var sinks []*consumer.SinkRunner
	var sinkNames []string
	// Sinks get points as they are, the rollup's output and logmetric's
	// points; the raw input of the rollup only when there is no rollup.
	sinkOrigins := []string{stream.OriginIngest, stream.OriginRollup, stream.OriginDerived}
	if rollupRun == nil {
		sinkOrigins = append(sinkOrigins, stream.OriginAgg)
	}
	sinkCfgs := cfg.Sinks
	if !a.consumers() {
		sinkCfgs = nil
	}
	for i := range sinkCfgs {
		sc := &sinkCfgs[i]
		sk, deps, err := a.newSinkDeps(sc)
		if err != nil {
			return fmt.Errorf("sink %s: %w", sc.Name, err)
		}
		rc := sinkRunnerConfig(sc, deps)
		rc.Origins = sinkOrigins
		rc.Partitions = a.durableParts(caps)
		rc.PositionsPath = filepath.Join(cfg.DataDir, "consumers", sc.Name+".pos")
		r, err := consumer.NewSinkRunner(rc, st, sk, a.reg, a.log)
		if err != nil {
			return err
		}
		sinks = append(sinks, r)
		sinkNames = append(sinkNames, sc.Name)
		info.Sinks = append(info.Sinks, fmt.Sprintf("%-16s %s", sc.Name, sc.Type))
	}

	// Start: consumers, batcher, then intake.
	consCtx, cancelCons := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelCons()
	var consWG sync.WaitGroup
	errc := make(chan error, len(sinks)+len(procs)+len(listeners)+2)
	for _, r := range procs {
		consWG.Add(1)
		go func() {
			defer consWG.Done()
			if err := r.Run(consCtx); err != nil {
				errc <- err
			}
		}()
	}
	for _, r := range sinks {
		consWG.Add(1)
		go func() {
			defer consWG.Done()
			if err := r.Run(consCtx); err != nil {
				errc <- err
			}
		}()
	}
	batchCtx, cancelBatch := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBatch()
	batchDone := make(chan error, 1)
	// The batcher also publishes for nobody in consume mode: it is
	// cheap and keeps one shutdown path.
	go func() { batchDone <- batcher.Run(batchCtx, drainTimeout) }()

	inCtx, cancelIn := context.WithCancel(ctx)
	defer cancelIn()
	var inWG sync.WaitGroup
	intakeStarted = true
	for _, r := range listeners {
		inWG.Add(1)
		go func() {
			defer inWG.Done()
			if err := r.Run(inCtx); err != nil {
				errc <- err
			}
		}()
	}
	mux := a.mux(batcher)
	mux.Handle("/readyz", rd) // health.go
	if a.agent() {
		a.logHandlers(mux, batcher)
		mux.Handle("/v1/records", ingest.NewRecordHandler(ingest.RecordConfig{Token: cfg.Agent.HTTP.Token, MaxBody: cfg.Agent.HTTP.MaxBody,
			PublishTimeout: cfg.Agent.Batch.PublishTimeout, MaxBatchBytes: cfg.Agent.Batch.MaxBatchBytes}, pub, a.reg))
	}
	api := a.mountAPI(mux, st, hist, errLogs) // api.go: /query, /api/v1/*, the web UI
	limited := ingest.RefuseWhenFull(a.intakeLimit(mux), a.gate, a.reg)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/report", "/logs", "/cwlogs", "/telemetry", "/v1/records", "/api/v2/event":
			limited.ServeHTTP(w, r)
		default:
			mux.ServeHTTP(w, r)
		}
	})
	// A unified line port serves the Wavefront endpoints through the
	// intake's limits and the health endpoints (lineport.go).
	a.linePort.set(ingest.LinePortHandler(limited, mux, a.reg))
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: cfg.Agent.HTTP.ReadTimeout, IdleTimeout: 2 * time.Minute}
	srv.RegisterOnShutdown(api.shutdown) // ends live tails
	go func() {
		if err := srv.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	if ready != nil {
		ready(info)
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		a.log.Info("a component failed; shutting down") // the error itself is returned
	}

	// Shutdown in order.
	a.log.Info("shutting down: stopping intake")
	shCtx, cancelSh := context.WithTimeout(context.Background(), 5*time.Second)
	_ = srv.Shutdown(shCtx)
	cancelSh()
	cancelIn()
	// Listeners blocked on a full publish queue wait for the publishers,
	// which with the stream down take publish_timeout per batch: start the
	// drain (which spools what the stream does not take) after at most
	// drainTimeout; what listeners hand over later is dropped and counted.
	startDrain := time.AfterFunc(drainTimeout, cancelBatch)
	inWG.Wait()
	startDrain.Stop()
	a.log.Info("publishing open batches")
	cancelBatch()
	if err := <-batchDone; err != nil {
		a.log.Error("drain", "err", err)
	}
	a.catchUp(st, sinkNames, 3*time.Second)
	cancelCons()
	consWG.Wait()
	a.log.Info("stopped")
	return runErr
}

// durableParts is the partition assignment of this process's durable
// consumers (sinks): les consume --partitions, unless the stream assigns
// them itself.
func (a *App) durableParts(caps stream.Capabilities) []int {
	if caps.GroupAssignment {
		return nil
	}
	return a.parts
}

// requireToken serves h only to requests carrying token (any, when token
// is empty), as the intake endpoints do.
func requireToken(token string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ingest.Authorized(r, token) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="les"`)
			http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// catchUp gives consumers a moment to deliver what was just published.
func (a *App) catchUp(st stream.Stream, names []string, limit time.Duration) {
	if !st.Capabilities().DurableCursors {
		return
	}
	deadline := time.Now().Add(limit)
	for _, n := range names {
		for time.Now().Before(deadline) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			lag, err := st.Lag(ctx, stream.LagQuery{Durable: n, Partitions: a.durableParts(st.Capabilities())})
			cancel()
			// An error other than "cannot count" is most often a sink
			// whose durable is still being created (it then has
			// everything stored still to read): keep waiting for it.
			if lag == 0 && err == nil || errors.Is(err, errors.ErrUnsupported) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func (a *App) bind(l ListenerConfig, b *ingest.Batcher) (runner, string, error) {
	spec := formats[l.Format]
	if l.Source == "" {
		l.Source = a.cfg.Agent.DefaultSource
	}
	if bind := binders[l.Format]; bind != nil {
		return bind(a, l, b)
	}
	if l.Transport == "tcp" {
		// The connections' series caches share one budget: a
		// connection whose cache would go past it begins its cache
		// anew and, while there is no room, decodes without caching
		// (slower, never wrong).
		l.seriesBudget = wavefront.NewCacheBudget(wavefront.DefaultCacheBudget)
	}
	newDec := func() ingest.Decoder { return spec.newDecoder(l) }
	in := ingest.NewIntake(l.Format, l.Transport, b, a.reg)
	in.Gate = a.gate
	switch l.Transport {
	case "tcp":
		tc := ingest.TCPConfig{Address: l.Address, MaxLine: l.MaxLine, MaxConnections: l.MaxConnections}
		if wfhttp.Unified(l.Format) {
			tc.HTTP = a.linePortServer() // lineport.go
		}
		t, err := ingest.ListenTCP(tc, in, newDec, a.log)
		if err != nil {
			return nil, "", err
		}
		return t, t.Addr().String(), nil
	default: // udp, unixgram
		u, err := ingest.ListenUDP(ingest.UDPConfig{Address: l.Address, Network: l.Transport,
			Readers: l.Readers, MaxDatagram: l.MaxDatagram}, in, newDec, a.reg, a.log)
		if err != nil {
			return nil, "", err
		}
		return u, u.Addr().String(), nil
	}
}

func (a *App) mux(b *ingest.Batcher) *http.ServeMux {
	cfg := a.cfg.Agent.HTTP
	mux := http.NewServeMux()
	if a.agent() {
		// /report?f=… lines and /api/v2/event events (log records).
		wfhttp.Handle(mux, wfhttp.Config{Token: cfg.Token, MaxBody: cfg.MaxBody, DefaultSource: a.cfg.Agent.DefaultSource}, b, a.reg)
	}
	var metrics http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		a.reg.WritePrometheus(w)
	})
	if cfg.ProtectMetrics {
		metrics = requireToken(cfg.Token, metrics)
	}
	mux.Handle("/metrics", metrics)
	// Liveness: the process serves HTTP. Readiness (can it accept data?)
	// is /readyz, registered by Run.
	live := func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	}
	mux.HandleFunc("/healthz", live)
	mux.HandleFunc("/livez", live)
	return mux
}
