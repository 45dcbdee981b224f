// Package extension is les as an AWS Lambda extension: it registers with
// the Extensions API, binds the loopback listeners of les up, subscribes
// to the Telemetry API, and publishes what the function emits and what
// Lambda reports to the user's stream, without the function's response
// ever waiting for it. See README.md in internal/lambda and ADR 0005.
package extension

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/les-streams/les/internal/format/lambda"
	"github.com/les-streams/les/internal/ingest"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
)

// Options are what the binary (or a test) decides.
type Options struct {
	// Name is the extension's registration name: its file name under
	// /opt/extensions ("les").
	Name string
	// Getenv reads the environment (os.Getenv when nil).
	Getenv func(string) string
	// Stderr receives the extension's log (os.Stderr when nil).
	Stderr io.Writer
	// HTTPClient for the Runtime API (nil: a plain client; Next must
	// have no timeout).
	HTTPClient *http.Client
	// Ready, when set, is called once the extension is registered,
	// listening and subscribed, just before its first next.
	Ready func(Info)
	// Registry receives the self-metrics (nil: a private one).
	Registry *selfmetric.Registry
	// Started is when the process started (zero: when Run was called);
	// the ready log line reports the init time from it.
	Started time.Time
	// OpenStream, when set, opens the stream instead of the configured
	// kind's backend (tests publish to internal/stream/mem). It is called
	// at the first publish, like the backend.
	OpenStream func(ctx context.Context) (stream.Stream, error)
	// GOMAXPROCS, when positive, is set once the extension is ready,
	// before its first next (the binary passes GOMAXPROCS(os.Getenv));
	// the init keeps the runtime's default (with one P the pipeline's
	// start waited longer for the emulator's answers).
	GOMAXPROCS int
}

// Info describes the running extension.
type Info struct {
	Listeners []string
	Telemetry string // address of the Telemetry API listener ("" if not subscribed)
	Managed   bool   // Lambda Managed Instances: SHUTDOWN only
	Stream    string
}

// Errors Run returns after reporting them to Lambda.
var (
	// ErrConfig: the configuration is missing or malformed and
	// LES_ON_CONFIG_ERROR=fail (init/error Extension.ConfigInvalid was
	// sent).
	ErrConfig = errors.New("les extension: configuration")
)

// telemetryStartWait bounds the wait for an invocation's platform.start
// (Lambda delivers it within the 25 ms buffering timeout).
const telemetryStartWait = time.Second

// shutdownMargin is kept free before a SHUTDOWN deadline for exiting.
const shutdownMargin = 100 * time.Millisecond

// Run is the whole life of the extension: init, the event loop, and the
// final flush at SHUTDOWN. It returns nil after a SHUTDOWN (or ctx's end)
// was handled, or an error that it has already reported to Lambda with
// init/error or exit/error where the API allowed.
func Run(ctx context.Context, o Options) error {
	runStart := time.Now()
	getenv := o.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	stderr := o.Stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	name := o.Name
	if name == "" {
		name = "les"
	}
	api := getenv("AWS_LAMBDA_RUNTIME_API")
	if api == "" {
		return errors.New("les extension: AWS_LAMBDA_RUNTIME_API is not set: run inside AWS Lambda (or the Runtime Interface Emulator)")
	}
	started := o.Started
	if started.IsZero() {
		started = runStart
	}
	cfg, cfgErr := Load(getenv)
	log := newLogger(stderr, cfg.LogLevel)
	// phase logs the init's steps at debug level, in ms since started.
	phase := func(name string) {
		log.Debug("les extension init", "phase", name, "ms", float64(time.Since(started).Microseconds())/1000)
	}
	log.Debug("les extension init", "phase", "main", "ms", float64(runStart.Sub(started).Microseconds())/1000)
	phase("configured")
	client := NewClient(api, o.HTTPClient)
	managed := getenv("AWS_LAMBDA_INITIALIZATION_TYPE") == "lambda-managed-instances"
	events := []string{EventInvoke, EventShutdown}
	if managed {
		events = []string{EventShutdown}
	}
	// Register first, alone: Lambda starts the runtime once every
	// extension has registered, so nothing competes with this round trip
	// for the CPU. (Starting the pipeline while it was out delayed the
	// answer by ~2 ms at p50 under the emulator and gained nothing:
	// docs/performance.md, Init.)
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := client.Register(rctx, name, events)
	cancel()
	if err != nil {
		return fmt.Errorf("les extension: %w", err)
	}
	phase("registered")
	if cfgErr != nil {
		if cfg.OnConfigError != "fail" {
			// Telemetry must never take the function down (ADR 0005): the
			// error goes to the extension's log (CloudWatch Logs, and the
			// Telemetry API's extension stream) and les idles.
			log.Error("les is disabled: its configuration is invalid, so nothing is collected; the function runs without it (LES_ON_CONFIG_ERROR=fail makes this fail the init instead)", "err", cfgErr)
			return idle(ctx, client)
		}
		reportInit(ctx, client, ErrorConfigInvalid, cfgErr)
		return fmt.Errorf("%w: %w", ErrConfig, cfgErr)
	}
	reg := o.Registry
	if reg == nil {
		reg = selfmetric.New()
	}
	x := &ext{cfg: cfg, log: log, reg: reg, client: client, managed: managed,
		tracker: newTracker(), policy: policy{cfg: cfg.Flush}, openStream: o.OpenStream, phase: phase}
	if err := x.start(ctx); err != nil {
		x.stopAll()
		reportInit(ctx, client, ErrorListen, err)
		return fmt.Errorf("les extension: %w", err)
	}
	if x.telSrv != nil {
		if err := x.subscribe(ctx); err != nil {
			x.log.Warn("telemetry api unavailable: no platform records; flushes run in the background", "err", err)
		}
	}
	x.logPhase("subscribed")
	log.Info("les extension ready", "init_ms", float64(time.Since(started).Microseconds())/1000,
		"listeners", len(x.info.Listeners), "telemetry", x.telemetry, "stream", cfg.Stream.Kind, "managed", managed)
	if o.Ready != nil {
		o.Ready(x.info)
	}
	if o.GOMAXPROCS > 0 {
		runtime.GOMAXPROCS(o.GOMAXPROCS)
	}
	return x.loop(ctx)
}

// GOMAXPROCS is the extension's GOMAXPROCS after its init (see
// Options.GOMAXPROCS): 1 unless LES_GOMAXPROCS names a positive number.
// The extension shares the sandbox's CPUs (and CPU quota) with the
// function, and with a second P the Go scheduler wakes a second thread
// whenever it readies a goroutine (INVOKE, a datagram, a timer). One core
// decodes millions of lines a second, far more than one invocation at a
// time emits. ADR 0005, Decision 6.
func GOMAXPROCS(getenv func(string) string) int {
	if n, err := strconv.Atoi(getenv("LES_GOMAXPROCS")); err == nil && n > 0 {
		return n
	}
	return 1
}

func reportInit(ctx context.Context, c *Client, typ string, err error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = c.InitError(rctx, typ, err) // nothing more to do if this fails
}

// idle answers events without doing anything until SHUTDOWN (les
// disabled by a configuration error, LES_ON_CONFIG_ERROR=disable).
func idle(ctx context.Context, c *Client) error {
	for {
		ev, err := c.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("les extension: %w", err)
		}
		if ev.EventType == EventShutdown {
			return nil
		}
	}
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(strings.ToUpper(level)))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl}))
}

// ext is one running extension.
type ext struct {
	cfg     *Config
	log     *slog.Logger
	reg     *selfmetric.Registry
	client  *Client
	managed bool
	info    Info

	pub     *publisher
	batcher *ingest.Batcher
	spool   *ingest.Spool
	tracker *tracker
	policy  policy
	life    *ingest.Intake // records the extension itself makes (timeouts)

	openStream  func(ctx context.Context) (stream.Stream, error)
	phase       func(name string) // debug log of init steps (nil: none)
	telemetry   bool              // subscribed
	telSrv      *http.Server
	telAddr     *net.TCPAddr // of telSrv's listener
	sockets     []runner
	lastRequest string

	cancelIn, cancelBatch, cancelBG context.CancelFunc
	inWG, bgWG                      sync.WaitGroup
	batchDone                       chan error
	replaying                       sync.Mutex // one background replay at a time

	endFlushes, endTimeouts, replays, unsettled, synthesized interface{ Inc() }
}

// start builds and starts everything local, in this order: stream gate
// (not connected), batcher, spool, listeners, the Telemetry API listener
// (Run subscribes to it next). Nothing here talks to the stream or to
// the Runtime API.
func (x *ext) start(ctx context.Context) error {
	cfg := x.cfg
	b := backends()[cfg.Stream.Kind]
	if x.openStream != nil {
		b.open = func(ctx context.Context, _ *StreamConfig, _ streamDeps) (stream.Stream, error) {
			return x.openStream(ctx)
		}
	}
	x.pub = newPublisher(&cfg.Stream, b, streamDeps{Log: x.log, Metrics: x.reg})
	x.info.Stream = cfg.Stream.Kind
	x.info.Managed = x.managed
	var err error
	x.batcher, err = ingest.NewBatcher(cfg.Batch, x.pub, x.reg, x.log)
	if err != nil {
		return err
	}
	x.spool, err = ingest.OpenSpool(cfg.Spool, x.pub, x.reg, x.log)
	if err != nil {
		return err
	}
	x.batcher.SetSpool(x.spool)
	x.logPhase("spool opened")
	x.life = ingest.NewIntake("lambda", "extension", x.batcher, x.reg)
	x.endFlushes = x.reg.Counter("les_lambda_end_flushes_total")
	x.endTimeouts = x.reg.Counter("les_lambda_end_flush_timeouts_total")
	x.replays = x.reg.Counter("les_lambda_spool_replays_total")
	x.unsettled = x.reg.Counter("les_lambda_unsettled_at_freeze_total")
	x.synthesized = x.reg.Counter("les_lambda_synthesized_endings_total")

	newHTTP := lineHTTP(cfg, x.batcher, x.reg, x.log)
	for _, l := range cfg.Listeners {
		r, addr, err := bind(l, cfg.Source, x.batcher, x.reg, x.log, newHTTP)
		if err != nil {
			return fmt.Errorf("listen %s %s %s: %w", l.Format, l.Transport, l.Address, err)
		}
		x.sockets = append(x.sockets, r)
		x.info.Listeners = append(x.info.Listeners, l.Format+" "+l.Transport+" "+addr)
	}

	bg := context.WithoutCancel(ctx)
	var batchCtx, inCtx, bgCtx context.Context
	batchCtx, x.cancelBatch = context.WithCancel(bg)
	inCtx, x.cancelIn = context.WithCancel(bg)
	bgCtx, x.cancelBG = context.WithCancel(bg)
	x.batchDone = make(chan error, 1)
	go func() { x.batchDone <- x.batcher.Run(batchCtx, time.Second) }()
	x.bgWG.Add(1)
	go func() {
		defer x.bgWG.Done()
		x.spool.Run(bgCtx)
	}()
	for _, r := range x.sockets {
		x.inWG.Add(1)
		go func() {
			defer x.inWG.Done()
			_ = r.Run(inCtx)
		}()
	}
	x.sockets = nil // owned by their Run now
	x.logPhase("listening")

	if x.client == nil { // flush tests run the pipeline alone
		return nil
	}
	if err := x.serveTelemetry(); err != nil {
		x.log.Warn("telemetry api unavailable: no platform records; flushes run in the background", "err", err)
	}
	return nil
}

func (x *ext) logPhase(name string) {
	if x.phase != nil {
		x.phase(name)
	}
}

// platformSource is the source of the records about the function (the
// Telemetry API's, timeouts and failures): the function name, or the
// default source where there is no function name (outside Lambda).
func (x *ext) platformSource() string {
	if x.cfg.FunctionName != "" {
		return x.cfg.FunctionName
	}
	return x.cfg.Source
}

// serveTelemetry binds the Telemetry API listener and serves it
// (x.telSrv, x.telAddr); subscribe then subscribes to it.
func (x *ext) serveTelemetry() error {
	ln, err := listenTelemetry(x.cfg.TelemetryPort)
	if err != nil {
		return err
	}
	h := &telemetryHandler{in: ingest.NewIntake("telemetry", "http", x.batcher, x.reg), source: x.platformSource(), tr: x.tracker,
		deliveries: x.reg.Counter("les_lambda_telemetry_deliveries_total")}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 5 * time.Minute}
	x.telSrv = srv
	x.telAddr = ln.Addr().(*net.TCPAddr)
	x.bgWG.Add(1)
	go func() {
		defer x.bgWG.Done()
		_ = srv.Serve(ln) // srv, not x.telSrv: a failed subscription clears that
	}()
	return nil
}

// subscribe subscribes to the Telemetry API at the listener of
// serveTelemetry, and closes that listener when the subscription fails.
func (x *ext) subscribe(ctx context.Context) error {
	sub := Subscription{SchemaVersion: telemetrySchema, Types: []string{"platform", "function", "extension"},
		Buffering:   telemetryBuffering,
		Destination: Destination{Protocol: "HTTP", URI: "http://sandbox.localdomain:" + strconv.Itoa(x.telAddr.Port) + "/telemetry"}}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := x.client.SubscribeTelemetry(sctx, sub); err != nil {
		_ = x.telSrv.Close()
		x.telSrv = nil
		return err
	}
	x.telemetry = true
	x.info.Telemetry = x.telAddr.String()
	return nil
}

// listenTelemetry binds the Telemetry API listener. Lambda delivers to
// http://sandbox.localdomain:PORT, a name its /etc/hosts gives; where the
// name is not there (the emulator, tests) the listener is on 127.0.0.1,
// which is where the emulator delivers. /etc/hosts is read directly: a
// DNS query for a name that does not resolve would hold init.
func listenTelemetry(port int) (net.Listener, error) {
	ip := hostsEntry("/etc/hosts", "sandbox.localdomain")
	if ip == "" {
		ip = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("telemetry listener: %w", err)
	}
	return ln, nil
}

// hostsEntry returns the first address a hosts file gives name, or "".
func hostsEntry(path, name string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		for _, h := range f[min(1, len(f)):] {
			if strings.EqualFold(h, name) {
				return f[0]
			}
		}
	}
	return ""
}

// loop answers events until SHUTDOWN.
func (x *ext) loop(ctx context.Context) error {
	for {
		ev, err := x.client.Next(ctx)
		if err != nil {
			if ctx.Err() != nil { // SIGTERM: flush like a SHUTDOWN
				x.shutdown(Event{EventType: EventShutdown, ShutdownReason: "sigterm", DeadlineMs: time.Now().Add(1500 * time.Millisecond).UnixMilli()})
				return nil
			}
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_ = x.client.ExitError(rctx, ErrorFatal, err)
			cancel()
			x.shutdown(Event{EventType: EventShutdown, ShutdownReason: "next failed", DeadlineMs: time.Now().Add(time.Second).UnixMilli()})
			return fmt.Errorf("les extension: %w", err)
		}
		switch ev.EventType {
		case EventInvoke:
			x.invoke(ctx, ev)
		case EventShutdown:
			x.shutdown(ev)
			return nil
		default:
			x.log.Warn("unknown event type; ignored", "type", ev.EventType)
		}
	}
}

// invoke handles one INVOKE: let publishes through, re-publish the spool
// in the background, and — if the policy says this invocation ends with a
// flush — wait for the runtime to be done and flush, bounded.
func (x *ext) invoke(ctx context.Context, ev Event) {
	x.pub.Open()
	x.lastRequest = ev.RequestID
	if !x.spool.Empty() {
		// Only when something is spooled: a goroutine reading the spool
		// directory at every INVOKE competes with the function for the
		// sandbox's CPU (docs/performance.md, added latency).
		x.replayInBackground(ctx)
	}
	if !x.policy.atInvoke(time.Now()) || !x.telemetry {
		return // background: next at once; the batcher publishes while the sandbox runs
	}
	// Telemetry that does not even announce the invocation is broken:
	// never hold the sandbox for it again.
	sctx, cancel := context.WithTimeout(ctx, telemetryStartWait)
	started := x.tracker.waitStarted(sctx, ev.RequestID)
	cancel()
	if !started {
		x.telemetry = false
		x.log.Warn("telemetry api delivers nothing; flushing in the background from now on", "wait", telemetryStartWait)
		return
	}
	wctx, cancel := context.WithCancel(ctx)
	if d := ev.Deadline(); !d.IsZero() {
		wctx, cancel = context.WithDeadline(ctx, d.Add(-50*time.Millisecond))
	}
	_, _ = x.tracker.waitRuntimeDone(wctx, ev.RequestID)
	cancel()
	x.endFlush()
}

// endFlush publishes what is open with the short bound of
// cfg.Flush.Timeout (none when the last publish failed); then, if the
// stream has not taken everything, shuts the gate so that the rest is
// spooled before the freeze.
func (x *ext) endFlush() {
	x.endFlushes.Inc()
	t := x.cfg.Flush.Timeout
	if !x.pub.Healthy() {
		t = 0 // the stream failed last time: spool at once
	}
	ctx, cancel := context.WithTimeout(context.Background(), t)
	err := x.batcher.Settle(ctx)
	cancel()
	if err == nil {
		return
	}
	x.endTimeouts.Inc()
	x.pub.Shut()
	ctx, cancel = context.WithTimeout(context.Background(), x.cfg.Flush.SpoolTimeout)
	if err := x.batcher.Settle(ctx); err != nil {
		x.unsettled.Inc()
	}
	cancel()
}

// replayInBackground re-publishes the spool while the sandbox runs (one
// replay at a time; the spool's own timer retries too).
func (x *ext) replayInBackground(ctx context.Context) {
	if !x.replaying.TryLock() {
		return
	}
	x.bgWG.Add(1)
	go func() {
		defer x.bgWG.Done()
		defer x.replaying.Unlock()
		x.replays.Inc()
		_ = x.spool.Replay(context.WithoutCancel(ctx))
	}()
}

// shutdown is the final flush, within the SHUTDOWN deadline: wait a
// little for the last platform.report, record a timeout or failure the
// platform did not report, stop intake, publish everything (spooling what
// the stream does not take in time), re-publish the spool, stop.
func (x *ext) shutdown(ev Event) {
	deadline := ev.Deadline()
	if deadline.IsZero() || time.Until(deadline) > 2*time.Second {
		deadline = time.Now().Add(2 * time.Second)
	}
	deadline = deadline.Add(-shutdownMargin)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	x.pub.Open()
	last := x.lastRequest
	if last == "" {
		last = x.tracker.lastStarted()
	}
	reported := false
	if x.telemetry && last != "" {
		wctx, wcancel := context.WithTimeout(ctx, time.Until(deadline)/3)
		reported = x.tracker.waitReported(wctx, last)
		wcancel()
	}
	if !reported {
		x.recordEnding(ev.ShutdownReason, last)
	}
	// Stop intake: the runtime is gone; read what the sockets hold.
	x.cancelIn()
	x.inWG.Wait()
	done := make(chan struct{})
	go func() {
		defer close(done)
		x.replaying.Lock()
		defer x.replaying.Unlock()
		_ = x.spool.Replay(ctx)
	}()
	// Publish everything; what is not in the stream 200ms before the
	// deadline is spooled.
	sctx, scancel := context.WithDeadline(ctx, deadline.Add(-200*time.Millisecond))
	err := x.batcher.Settle(sctx)
	scancel()
	if err != nil {
		x.pub.Shut()
		sctx, scancel = context.WithTimeout(context.Background(), max(time.Until(deadline), 10*time.Millisecond))
		_ = x.batcher.Settle(sctx)
		scancel()
	}
	<-done
	x.stopAll()
	x.log.Info("les extension stopped", memory()...)
}

// memory describes the process's memory for the log (runtime/metrics:
// cheap, no profiler linked): what the heap holds, what the GC aims at,
// and what the runtime has mapped and returned to the OS.
func memory() []any {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/goal:bytes"},
		{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}, {Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	mb := func(i int) float64 {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return float64(s[i].Value.Uint64()*10>>20) / 10
	}
	var cycles uint64
	if s[4].Value.Kind() == metrics.KindUint64 {
		cycles = s[4].Value.Uint64()
	}
	return []any{"heap_objects_mb", mb(0), "gc_goal_mb", mb(1), "runtime_total_mb", mb(2), "released_mb", mb(3), "gc_cycles", cycles}
}

// recordEnding publishes what the platform did not: an invocation that
// ended in a timeout or failure (SHUTDOWN reason timeout / failure, e.g.
// out of memory) becomes aws.lambda.timeouts or aws.lambda.errors and an
// error log with the request id.
func (x *ext) recordEnding(reason, requestID string) {
	r := strings.ToLower(reason)
	metric := ""
	switch {
	case strings.Contains(r, "timeout"):
		metric = lambda.MetricTimeouts
	case strings.Contains(r, "failure"):
		metric = lambda.MetricErrors
	default:
		return
	}
	now := time.Now().UnixNano()
	var b model.Batch
	b.Metrics = append(b.Metrics, model.Metric{Name: metric, Value: 1, Timestamp: now, Source: x.platformSource(), Kind: model.Counter})
	mark := b.TagMark()
	b.AddTag("type", "extension")
	b.AddTag("shutdown_reason", reason)
	msg := "invocation " + requestID + " ended: " + r + " (SHUTDOWN reason " + reason + ")"
	b.Logs = append(b.Logs, model.Log{Timestamp: now, Source: x.platformSource(), RequestID: requestID, Level: "ERROR",
		Message: []byte(msg), Attrs: b.TagsSince(mark)})
	x.synthesized.Inc()
	x.life.Deliver(&b)
}

// stopAll stops whatever start started (safe after a partial start).
func (x *ext) stopAll() {
	if x.cancelIn != nil {
		x.cancelIn()
		x.inWG.Wait()
	}
	stopped, stop := context.WithCancel(context.Background())
	stop()
	for _, r := range x.sockets { // bound but never run
		_ = r.Run(stopped)
	}
	if x.telSrv != nil {
		_ = x.telSrv.Close()
	}
	if x.cancelBatch != nil {
		x.cancelBatch()
		<-x.batchDone
	}
	if x.cancelBG != nil {
		x.cancelBG()
	}
	x.bgWG.Wait()
	if x.pub != nil {
		_ = x.pub.Close()
	}
}
