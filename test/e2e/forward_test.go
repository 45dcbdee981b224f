package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/les-streams/les/internal/stream/embedded"
	embedsrv "github.com/les-streams/les/internal/stream/embedded/server"
)

// TestExternalJetStream runs les against a separate NATS JetStream server
// (stream.kind nats) instead of the embedded one.
func TestExternalJetStream(t *testing.T) {
	ext, err := embedsrv.Open(context.Background(), embedded.Config{Listen: "127.0.0.1:-1", Auth: "none"}, t.TempDir(), 1, embedsrv.Deps{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close()
	l := NewLes(t, fmt.Sprintf(`
sinks:
  - name: archive
    type: file
    file: { path: ./out.ndjson }
`))
	l.Config = strings.Replace(l.Config, "stream: { embedded: { listen:", fmt.Sprintf("stream: { kind: nats, nats: { url: %q }, embedded: { listen:", ext.ClientURL()), 1)
	l.Start()
	if !strings.Contains(l.Output(), ext.ClientURL()) {
		t.Fatalf("les does not report the external stream:\n%s", l.Output())
	}
	if _, err := l.Run("", "send", "--addr", l.Addr("wavefront"), "ext.metric 7 source=fn"); err != nil {
		t.Fatal(err)
	}
	out, err := l.Run("", "tail", "--url", ext.ClientURL(), "--from-start", "--limit", "1")
	if err != nil {
		t.Fatal(err)
	}
	it := parseItems(t, nonEmptyLines(out))[0]
	if it.Name != "ext.metric" || it.Value != 7 {
		t.Fatalf("tail of the external stream: %+v", it)
	}
	l.Stop()
}

// TestForwardToAnotherLes: a Wavefront sink in one les forwards to the
// Wavefront listener of a second les, distributions and spans included.
func TestForwardToAnotherLes(t *testing.T) {
	down := NewLes(t, "")
	down.Start()
	up := NewLes(t, fmt.Sprintf(`
rollup: { grace: 1s, tick: 100ms }
sinks:
  - name: forward
    type: wavefront
    signals: [metrics, distributions, spans]
    wavefront: { address: %q, trace_address: %q }
`, down.Addr("wavefront"), down.Addr("trace")))
	up.Start()
	if _, err := up.Run("", "send", "--addr", up.Addr("wavefront"), "fwd.gauge 1.25 source=fn-a env=prod"); err != nil {
		t.Fatal(err)
	}
	// Spans over HTTP f=trace.
	status, body := postAPI(t, up, "/report?f=trace", []byte(`getItem source=fn-a traceId=7b3bf470-9456-11e8-9eb6-529269fb1459 spanId=0313bafe-9457-11e8-9eb6-529269fb1459 parent=2f64e538-9457-11e8-9eb6-529269fb1459 http.status=200 `+fmt.Sprint(time.Now().Unix())+" 343\n"), nil)
	if status != http.StatusAccepted || !strings.Contains(body, `"accepted":1`) {
		t.Fatalf("trace post: %d %s", status, body)
	}
	items := map[string]item{}
	for _, it := range parseItems(t, down.Tail(2)) {
		items[it.Type+":"+it.Name] = it
	}
	if g := items["metric:fwd.gauge"]; g.Value != 1.25 || g.Source != "fn-a" || g.Tags["env"] != "prod" {
		t.Errorf("forwarded gauge: %+v (all: %v)", g, items)
	}
	if s, ok := items["span:getItem"]; !ok || s.Source != "fn-a" {
		t.Errorf("forwarded span: %+v (all: %v)", s, items)
	}
	up.Stop()
	down.Stop()
}
