// Package otlpin serves OTLP intake: OTLP/HTTP (protobuf and JSON, gzip)
// and OTLP/gRPC listeners that decode export requests with
// internal/format/otlp, publish the items durably through the batcher and
// answer Export*ServiceResponse with partial success. It is a package of
// its own so that binaries without OTLP intake (the Lambda extension) do
// not link pdata and gRPC.
package otlpin

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/encoding/gzip" // registers gzip: OTLP exporters may compress
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/les-streams/les/internal/format/otlp"
	"github.com/les-streams/les/internal/ingest"
	"github.com/les-streams/les/internal/model"
)

// Config configures an OTLP listener (HTTP or gRPC).
type Config struct {
	Address string
	// Token, when set, is required as "Authorization: Bearer <token>" (or
	// X-AUTH-TOKEN, and on HTTP ?t= / ?token=), as on the les HTTP intake.
	Token string
	// MaxBody bounds a request body or gRPC message, decompressed
	// (default 16 MiB).
	MaxBody int64
	// MaxConcurrent bounds requests served at once (default 16); others
	// wait up to 10 s, then get 503 (HTTP) or UNAVAILABLE (gRPC).
	MaxConcurrent int
	// ShutdownTimeout bounds the wait for requests in flight when Run's
	// context ends (default 5 s).
	ShutdownTimeout time.Duration
}

func (c *Config) defaults() {
	if c.MaxBody <= 0 {
		c.MaxBody = 16 << 20
	}
	if c.MaxConcurrent <= 0 {
		c.MaxConcurrent = 16
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 5 * time.Second
	}
}

// Whole-request rejections of OTLP listeners (besides ingest.ReasonBodyTooLarge
// and ingest.ReasonBadGzip).
const (
	ReasonOTLPPayload   = otlp.ReasonPayloadInvalid
	ReasonOTLPMediaType = otlp.ReasonUnsupportedMedia
)

// otlpCore is what the HTTP and gRPC listeners share: decoders, intake,
// batcher and the concurrency limit.
type otlpCore struct {
	cfg     Config
	intake  *ingest.Intake
	batcher *ingest.Batcher
	newDec  func() *otlp.Decoder
	pool    sync.Pool
	slots   chan struct{}
	log     *slog.Logger
}

func newOTLPCore(cfg Config, in *ingest.Intake, newDec func() *otlp.Decoder, b *ingest.Batcher, log *slog.Logger) *otlpCore {
	cfg.defaults()
	return &otlpCore{cfg: cfg, intake: in, batcher: b, newDec: newDec, slots: make(chan struct{}, cfg.MaxConcurrent), log: log}
}

// acquire takes a request slot, waiting up to 10 s.
func (c *otlpCore) acquire(ctx context.Context) bool {
	select {
	case c.slots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case c.slots <- struct{}{}:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

func (c *otlpCore) release() { <-c.slots }

func (c *otlpCore) decoder() *otlp.Decoder {
	if d, ok := c.pool.Get().(*otlp.Decoder); ok {
		return d
	}
	return c.newDec()
}

// cannotStore is the intake gate's reason for refusing every request now
// (the disk is full: ingest.StoreGate), counted as a rejection; "" when
// data can be stored.
func (c *otlpCore) cannotStore() string {
	why := c.intake.Gate.Check()
	if why != "" {
		c.intake.Reject(ingest.ReasonDiskFull)
	}
	return why
}

// readOTLPBody reads a request body as the OpenTelemetry Collector does:
// a body labelled "Content-Encoding: gzip" must be gzip (unlike the
// Wavefront paths, which decide by the bytes for an SDK that mislabels
// plain JSON). Unlabelled gzip is still accepted: no protobuf or JSON
// payload starts with the gzip magic bytes.
func readOTLPBody(r *http.Request, maxBody int64) ([]byte, string, error) {
	raw, reason, err := ingest.ReadRawBody(r, maxBody)
	if err != nil {
		return nil, reason, err
	}
	if strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") && (len(raw) < 2 || raw[0] != 0x1f || raw[1] != 0x8b) {
		return nil, ingest.ReasonBadGzip, errors.New("body is labelled Content-Encoding gzip but is not gzip")
	}
	return ingest.Gunzip(raw, maxBody)
}

// deliver accounts batch and publishes it durably (a success answer means
// every accepted item is in the stream).
func (c *otlpCore) deliver(ctx context.Context, batch *model.Batch) error {
	c.intake.Account(batch)
	if batch.Len() == 0 {
		return nil
	}
	return c.batcher.PublishNow(ctx, batch)
}

// HTTPServer serves OTLP/HTTP: POST /v1/metrics, /v1/logs and /v1/traces
// with protobuf or JSON bodies, optionally gzip-compressed.
type HTTPServer struct {
	core *otlpCore
	ln   net.Listener
	srv  *http.Server
}

// ListenHTTP binds cfg.Address; Run serves it.
func ListenHTTP(cfg Config, in *ingest.Intake, newDec func() *otlp.Decoder, b *ingest.Batcher, log *slog.Logger) (*HTTPServer, error) {
	ln, err := net.Listen("tcp", cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("listen otlp http %s: %w", cfg.Address, err)
	}
	s := &HTTPServer{core: newOTLPCore(cfg, in, newDec, b, log), ln: ln}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		IdleTimeout: 2 * time.Minute}
	return s, nil
}

// Addr is the bound address.
func (s *HTTPServer) Addr() net.Addr { return s.ln.Addr() }

// Run serves until ctx ends, then waits (up to ShutdownTimeout) for
// requests in flight. With ctx already done it just closes the socket.
func (s *HTTPServer) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("otlp http: %w", err)
	case <-ctx.Done():
	}
	shCtx, cancel := context.WithTimeout(context.Background(), s.core.cfg.ShutdownTimeout)
	defer cancel()
	if err := s.srv.Shutdown(shCtx); err != nil {
		_ = s.srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("otlp http: %w", err)
	}
	return nil
}

func (s *HTTPServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var sig otlp.Signal
	switch r.URL.Path {
	case "/v1/metrics":
		sig = otlp.SignalMetrics
	case "/v1/logs":
		sig = otlp.SignalLogs
	case "/v1/traces":
		sig = otlp.SignalTraces
	default:
		http.Error(w, "not an OTLP path (use /v1/metrics, /v1/logs or /v1/traces)", http.StatusNotFound)
		return
	}
	enc, encOK := otlp.ParseContentType(r.Header.Get("Content-Type"))
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeOTLPError(w, enc, http.StatusMethodNotAllowed, codes.Unimplemented, "use POST")
		return
	}
	c := s.core
	if !ingest.Authorized(r, c.cfg.Token) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="les"`)
		writeOTLPError(w, enc, http.StatusUnauthorized, codes.Unauthenticated, "missing or wrong bearer token")
		return
	}
	if ce := r.Header.Get("Content-Encoding"); !encOK || ce != "" && !strings.EqualFold(ce, "gzip") && !strings.EqualFold(ce, "identity") {
		c.intake.Reject(ReasonOTLPMediaType)
		writeOTLPError(w, enc, http.StatusUnsupportedMediaType, codes.InvalidArgument,
			"unsupported media type: send Content-Type application/x-protobuf or application/json, Content-Encoding gzip or none")
		return
	}
	if why := c.cannotStore(); why != "" {
		w.Header().Set("Retry-After", "10")
		writeOTLPError(w, enc, http.StatusServiceUnavailable, codes.Unavailable, "les cannot store data now, retry later: "+why)
		return
	}
	if !c.acquire(r.Context()) {
		w.Header().Set("Retry-After", "1")
		writeOTLPError(w, enc, http.StatusServiceUnavailable, codes.Unavailable, "too many concurrent requests")
		return
	}
	defer c.release()
	body, reason, err := readOTLPBody(r, c.cfg.MaxBody)
	if err != nil {
		c.intake.Reject(reason)
		status := http.StatusBadRequest
		if reason == ingest.ReasonBodyTooLarge {
			status = http.StatusRequestEntityTooLarge
		}
		writeOTLPError(w, enc, status, codes.InvalidArgument, err.Error())
		return
	}
	dec := c.decoder()
	defer c.pool.Put(dec)
	var batch model.Batch
	if _, err := dec.Decode(&batch, sig, body, enc, time.Now().UnixNano()); err != nil {
		c.intake.Reject(ReasonOTLPPayload)
		writeOTLPError(w, enc, http.StatusBadRequest, codes.InvalidArgument, err.Error())
		return
	}
	if err := c.deliver(r.Context(), &batch); err != nil {
		w.Header().Set("Retry-After", "1")
		writeOTLPError(w, enc, http.StatusServiceUnavailable, codes.Unavailable, "stream unavailable: "+err.Error())
		return
	}
	out, err := marshalResponse(sig, enc, len(batch.Rejects), otlp.RejectMessage(batch.Rejects))
	if err != nil {
		writeOTLPError(w, enc, http.StatusInternalServerError, codes.Internal, err.Error())
		return
	}
	w.Header().Set("Content-Type", enc.ContentType())
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

// marshalResponse encodes the Export*ServiceResponse of sig, with a
// partial_success when rejected > 0.
func marshalResponse(sig otlp.Signal, enc otlp.Encoding, rejected int, msg string) ([]byte, error) {
	type marshaler interface {
		MarshalProto() ([]byte, error)
		MarshalJSON() ([]byte, error)
	}
	var m marshaler
	switch sig {
	case otlp.SignalMetrics:
		resp := pmetricotlp.NewExportResponse()
		if rejected > 0 {
			resp.PartialSuccess().SetRejectedDataPoints(int64(rejected))
			resp.PartialSuccess().SetErrorMessage(msg)
		}
		m = resp
	case otlp.SignalLogs:
		resp := plogotlp.NewExportResponse()
		if rejected > 0 {
			resp.PartialSuccess().SetRejectedLogRecords(int64(rejected))
			resp.PartialSuccess().SetErrorMessage(msg)
		}
		m = resp
	default:
		resp := ptraceotlp.NewExportResponse()
		if rejected > 0 {
			resp.PartialSuccess().SetRejectedSpans(int64(rejected))
			resp.PartialSuccess().SetErrorMessage(msg)
		}
		m = resp
	}
	if enc == otlp.EncodingJSON {
		return m.MarshalJSON()
	}
	return m.MarshalProto()
}

// writeOTLPError answers a failed request with a google.rpc.Status body in
// the request's encoding, as OTLP/HTTP asks.
func writeOTLPError(w http.ResponseWriter, enc otlp.Encoding, httpStatus int, code codes.Code, msg string) {
	st := status.New(code, msg).Proto()
	var body []byte
	if enc == otlp.EncodingJSON {
		body, _ = protojson.Marshal(st)
	} else {
		body, _ = proto.Marshal(st)
	}
	w.Header().Set("Content-Type", enc.ContentType())
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(httpStatus)
	_, _ = w.Write(body)
}

// GRPCServer serves the OTLP/gRPC metrics, logs and trace services.
type GRPCServer struct {
	core *otlpCore
	ln   net.Listener
	srv  *grpc.Server
}

// ListenGRPC binds cfg.Address; Run serves it.
func ListenGRPC(cfg Config, in *ingest.Intake, newDec func() *otlp.Decoder, b *ingest.Batcher, log *slog.Logger) (*GRPCServer, error) {
	ln, err := net.Listen("tcp", cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("listen otlp grpc %s: %w", cfg.Address, err)
	}
	s := &GRPCServer{core: newOTLPCore(cfg, in, newDec, b, log), ln: ln}
	s.srv = grpc.NewServer(grpc.MaxRecvMsgSize(int(s.core.cfg.MaxBody)), grpc.UnaryInterceptor(s.intercept))
	pmetricotlp.RegisterGRPCServer(s.srv, &grpcMetrics{s: s})
	plogotlp.RegisterGRPCServer(s.srv, &grpcLogs{s: s})
	ptraceotlp.RegisterGRPCServer(s.srv, &grpcTraces{s: s})
	return s, nil
}

// Addr is the bound address.
func (s *GRPCServer) Addr() net.Addr { return s.ln.Addr() }

// Run serves until ctx ends, then stops gracefully (forcibly after
// ShutdownTimeout). With ctx already done it just closes the socket.
func (s *GRPCServer) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("otlp grpc: %w", err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { s.srv.GracefulStop(); close(stopped) }()
	t := time.NewTimer(s.core.cfg.ShutdownTimeout)
	defer t.Stop()
	select {
	case <-stopped:
	case <-t.C:
		s.srv.Stop()
		<-stopped
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("otlp grpc: %w", err)
	}
	return nil
}

// intercept checks the token and takes a request slot.
func (s *GRPCServer) intercept(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if tok := s.core.cfg.Token; tok != "" {
		md, _ := metadata.FromIncomingContext(ctx)
		got := first(md.Get("x-auth-token"))
		if a := first(md.Get("authorization")); a != "" {
			got = strings.TrimPrefix(a, "Bearer ")
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(tok)) != 1 {
			return nil, status.Error(codes.Unauthenticated, "missing or wrong bearer token")
		}
	}
	if why := s.core.cannotStore(); why != "" {
		return nil, status.Error(codes.Unavailable, "les cannot store data now, retry later: "+why)
	}
	if !s.core.acquire(ctx) {
		return nil, status.Error(codes.Unavailable, "too many concurrent requests")
	}
	defer s.core.release()
	return h(ctx, req)
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// export maps one request with fn and publishes it; it returns the
// number of rejected items and their message.
func (s *GRPCServer) export(ctx context.Context, fn func(d *otlp.Decoder, b *model.Batch, now int64)) (int, string, error) {
	c := s.core
	dec := c.decoder()
	defer c.pool.Put(dec)
	var batch model.Batch
	fn(dec, &batch, time.Now().UnixNano())
	if err := c.deliver(ctx, &batch); err != nil {
		return 0, "", status.Error(codes.Unavailable, "stream unavailable: "+err.Error())
	}
	return len(batch.Rejects), otlp.RejectMessage(batch.Rejects), nil
}

type grpcMetrics struct {
	pmetricotlp.UnimplementedGRPCServer
	s *GRPCServer
}

func (g *grpcMetrics) Export(ctx context.Context, req pmetricotlp.ExportRequest) (pmetricotlp.ExportResponse, error) {
	n, msg, err := g.s.export(ctx, func(d *otlp.Decoder, b *model.Batch, now int64) { d.Metrics(b, req.Metrics(), now) })
	resp := pmetricotlp.NewExportResponse()
	if n > 0 {
		resp.PartialSuccess().SetRejectedDataPoints(int64(n))
		resp.PartialSuccess().SetErrorMessage(msg)
	}
	return resp, err
}

type grpcLogs struct {
	plogotlp.UnimplementedGRPCServer
	s *GRPCServer
}

func (g *grpcLogs) Export(ctx context.Context, req plogotlp.ExportRequest) (plogotlp.ExportResponse, error) {
	n, msg, err := g.s.export(ctx, func(d *otlp.Decoder, b *model.Batch, now int64) { d.Logs(b, req.Logs(), now) })
	resp := plogotlp.NewExportResponse()
	if n > 0 {
		resp.PartialSuccess().SetRejectedLogRecords(int64(n))
		resp.PartialSuccess().SetErrorMessage(msg)
	}
	return resp, err
}

type grpcTraces struct {
	ptraceotlp.UnimplementedGRPCServer
	s *GRPCServer
}

func (g *grpcTraces) Export(ctx context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	n, msg, err := g.s.export(ctx, func(d *otlp.Decoder, b *model.Batch, _ int64) { d.Traces(b, req.Traces()) })
	resp := ptraceotlp.NewExportResponse()
	if n > 0 {
		resp.PartialSuccess().SetRejectedSpans(int64(n))
		resp.PartialSuccess().SetErrorMessage(msg)
	}
	return resp, err
}
