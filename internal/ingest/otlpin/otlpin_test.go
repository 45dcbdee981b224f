package otlpin

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"math"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/les-streams/les/internal/ingest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.uber.org/goleak"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// twoGauges: one good point (7) and one NaN.
func twoGauges() pmetricotlp.ExportRequest {
	md := pmetric.NewMetrics()
	ms := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics()
	for _, v := range []float64{7, math.NaN()} {
		m := ms.AppendEmpty()
		m.SetName("g")
		dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
		dp.SetTimestamp(pcommon.Timestamp(1700000000e9))
		dp.SetDoubleValue(v)
	}
	return pmetricotlp.NewExportRequestFromMetrics(md)
}

func post(t *testing.T, url, ctype, cenc string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	if cenc != "" {
		req.Header.Set("Content-Encoding", cenc)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, out
}

func TestOTLPHTTPPartialSuccessAndBadInput(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	rig := startOTLP(t, "")
	defer rig.stop()
	defer http.DefaultClient.CloseIdleConnections()
	url := "http://" + rig.httpAddr + "/v1/metrics"
	req := twoGauges()
	pb, _ := req.MarshalProto()
	js, _ := req.MarshalJSON()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(pb)
	_ = zw.Close()

	for _, c := range []struct {
		name, ctype, cenc string
		body              []byte
	}{{"protobuf", "application/x-protobuf", "", pb}, {"json", "application/json", "", js}, {"gzip", "application/x-protobuf", "gzip", gz.Bytes()}} {
		resp, out := post(t, url, c.ctype, c.cenc, c.body)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != c.ctype {
			t.Fatalf("%s: status %d %s: %s", c.name, resp.StatusCode, resp.Header.Get("Content-Type"), out)
		}
		r := pmetricotlp.NewExportResponse()
		var err error
		if c.ctype == "application/json" {
			err = r.UnmarshalJSON(out)
		} else {
			err = r.UnmarshalProto(out)
		}
		if err != nil {
			t.Fatal(err)
		}
		ps := r.PartialSuccess()
		if ps.RejectedDataPoints() != 1 || !strings.Contains(ps.ErrorMessage(), `non_finite_value ×1 ("g")`) {
			t.Errorf("%s: partial success %d %q", c.name, ps.RejectedDataPoints(), ps.ErrorMessage())
		}
	}
	got := rig.published(t)
	if len(got.Metrics) != 3 || got.Metrics[0].Value != 7 {
		t.Errorf("published %+v", got.Metrics)
	}
	if n := rig.reg.Counter("les_ingest_rejected_total", "format", "otlp", "reason", "non_finite_value").Get(); n != 3 {
		t.Errorf("rejected counter %d, want 3", n)
	}

	// Whole-request failures: a google.rpc.Status body, and counted.
	status := func(out []byte) string {
		var st spb.Status
		if err := proto.Unmarshal(out, &st); err != nil {
			return "not a Status: " + err.Error()
		}
		return st.GetMessage()
	}
	for _, c := range []struct {
		name, path, ctype, cenc string
		body                    []byte
		want                    int
		reason                  string
	}{
		{"truncated", "/v1/metrics", "application/x-protobuf", "", pb[:len(pb)-2], 400, ReasonOTLPPayload},
		{"oversized", "/v1/metrics", "application/x-protobuf", "", make([]byte, 2<<20), 413, ingest.ReasonBodyTooLarge},
		{"media type", "/v1/metrics", "text/plain", "", pb, 415, ReasonOTLPMediaType},
		{"encoding", "/v1/metrics", "application/x-protobuf", "br", pb, 415, ReasonOTLPMediaType},
		{"bad gzip", "/v1/metrics", "application/x-protobuf", "gzip", pb, 400, ingest.ReasonBadGzip},
		{"unknown path", "/v2/metrics", "application/x-protobuf", "", pb, 404, ""},
	} {
		resp, out := post(t, "http://"+rig.httpAddr+c.path, c.ctype, c.cenc, c.body)
		if resp.StatusCode != c.want {
			t.Errorf("%s: status %d, want %d: %s", c.name, resp.StatusCode, c.want, out)
			continue
		}
		if c.reason == "" {
			continue
		}
		if status(out) == "" || strings.HasPrefix(status(out), "not a Status") {
			t.Errorf("%s: body %q", c.name, out)
		}
		if n := rig.reg.Counter("les_ingest_rejected_total", "format", "otlp", "reason", c.reason).Get(); n == 0 {
			t.Errorf("%s: reason %s not counted", c.name, c.reason)
		}
	}
}

func TestOTLPGRPCPartialSuccessAndToken(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	rig := startOTLP(t, "tok")
	defer rig.stop()
	conn, err := grpc.NewClient(rig.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pmetricotlp.NewGRPCClient(conn)
	ctx := context.Background()
	if _, err := client.Export(ctx, twoGauges()); grpcstatus.Code(err).String() != "Unauthenticated" {
		t.Fatalf("without token: %v", err)
	}
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer tok")
	resp, err := client.Export(ctx, twoGauges())
	if err != nil {
		t.Fatal(err)
	}
	if ps := resp.PartialSuccess(); ps.RejectedDataPoints() != 1 || ps.ErrorMessage() == "" {
		t.Errorf("partial success %d %q", ps.RejectedDataPoints(), ps.ErrorMessage())
	}
	if got := rig.published(t); len(got.Metrics) != 1 || got.Metrics[0].Value != 7 {
		t.Errorf("published %+v", got.Metrics)
	}
}

// TestOTLPRefusesWhileNothingCanBeStored: while the intake gate says the
// disk is full, OTLP/HTTP answers 503 with the reason and Retry-After and
// gRPC UNAVAILABLE, nothing is published, and both open again by
// themselves once the gate does.
func TestOTLPRefusesWhileNothingCanBeStored(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var full atomic.Bool
	full.Store(true)
	gate := ingest.NewStoreGate(func() string {
		if full.Load() {
			return "disk full: 0 bytes free"
		}
		return ""
	}, time.Millisecond)
	rig := startGatedOTLP(t, "", gate)
	defer rig.stop()
	defer http.DefaultClient.CloseIdleConnections()
	url := "http://" + rig.httpAddr + "/v1/metrics"
	pb, _ := twoGauges().MarshalProto()
	conn, err := grpc.NewClient(rig.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pmetricotlp.NewGRPCClient(conn)

	resp, out := post(t, url, "application/x-protobuf", "", pb)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("full disk: status %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	var st spb.Status
	if err := proto.Unmarshal(out, &st); err != nil || !strings.Contains(st.GetMessage(), "disk full") {
		t.Errorf("full disk: body %q (%v), want a Status naming the disk", out, err)
	}
	if _, err := client.Export(context.Background(), twoGauges()); grpcstatus.Code(err).String() != "Unavailable" || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("full disk over gRPC: %v", err)
	}
	if got := rig.published(t); got.Len() != 0 {
		t.Fatalf("published %d items while the disk was full", got.Len())
	}
	if got := rig.reg.Counter("les_ingest_rejected_total", "format", "otlp", "reason", ingest.ReasonDiskFull).Get(); got != 2 {
		t.Errorf("disk_full rejections %d, want 2", got)
	}

	full.Store(false)
	if resp, out := post(t, url, "application/x-protobuf", "", pb); resp.StatusCode != http.StatusOK {
		t.Fatalf("after space returned: status %d: %s", resp.StatusCode, out)
	}
	if _, err := client.Export(context.Background(), twoGauges()); err != nil {
		t.Fatalf("after space returned, gRPC: %v", err)
	}
	if got := rig.published(t); len(got.Metrics) != 2 {
		t.Errorf("published %d metrics after space returned, want 2 (one per request)", len(got.Metrics))
	}
}
