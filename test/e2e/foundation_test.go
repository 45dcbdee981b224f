package e2e

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

type item struct {
	Type      string            `json:"type"`
	Record    string            `json:"record"`
	Name      string            `json:"name"`
	Value     float64           `json:"value"`
	Kind      string            `json:"kind"`
	Timestamp string            `json:"timestamp"`
	Source    string            `json:"source"`
	Tags      map[string]string `json:"tags"`
	Count     float64           `json:"count"`
	Window    string            `json:"window"`
}

func parseItems(t *testing.T, lines []string) []item {
	t.Helper()
	var out []item
	for _, l := range lines {
		var it item
		if err := json.Unmarshal([]byte(l), &it); err != nil {
			t.Fatalf("not JSON: %q: %v", l, err)
		}
		out = append(out, it)
	}
	return out
}

func byName(items []item) map[string]item {
	m := map[string]item{}
	for _, it := range items {
		m[it.Name] = it
	}
	return m
}

// postAPI POSTs body to path on les' API and returns the status and body.
func postAPI(t *testing.T, l *Les, path string, body []byte, hdr map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+l.Addr("http")+path, bytes.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func gz(s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

// TestWavefrontTCPUDPHTTP sends lines over every transport and reads them
// back with les tail and from the file sink.
func TestWavefrontTCPUDPHTTP(t *testing.T) {
	l := NewLes(t, `
sinks:
  - name: archive
    type: file
    file: { path: ./out.ndjson }
`)
	l.Start()
	ts := time.Now().Unix()
	if _, err := l.Run("", "send", "--addr", l.Addr("wavefront"), "lambda.tcp 0.42 source=fn-a region=eu", "this is not a metric"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Run("lambda.udp 1.5 "+strconv.FormatInt(ts, 10)+" host=fn-b \"env\"=\"prod east\"\n", "send", "--udp", "--addr", l.Addr("wavefront")); err != nil {
		t.Fatal(err)
	}
	status, body := postAPI(t, l, "/report?f=wavefront", gz("lambda.http 3 source=fn-c\nbad line x\n"), map[string]string{"Content-Encoding": "gzip"})
	if status != http.StatusAccepted || !strings.Contains(body, `"accepted":1`) {
		t.Fatalf("POST /report: %d %s", status, body)
	}
	items := byName(parseItems(t, l.Tail(3)))
	if got := items["lambda.tcp"]; got.Value != 0.42 || got.Source != "fn-a" || got.Tags["region"] != "eu" || got.Kind != "gauge" {
		t.Errorf("tcp item: %+v", got)
	}
	got := items["lambda.udp"]
	if got.Source != "fn-b" || got.Tags["env"] != "prod east" {
		t.Errorf("udp item: %+v", got)
	}
	if tm, err := time.Parse(time.RFC3339Nano, got.Timestamp); err != nil || tm.Unix() != ts {
		t.Errorf("udp timestamp %q (%v), want unix %d", got.Timestamp, err, ts)
	}
	if items["lambda.http"].Source != "fn-c" {
		t.Errorf("http item: %+v", items["lambda.http"])
	}
	Eventually(t, "file sink", func() bool {
		b, _ := os.ReadFile(filepath.Join(l.Dir, "out.ndjson"))
		return strings.Count(string(b), "\n") >= 3
	})
	if v := l.Metric(`les_ingest_received_total{format="wavefront",transport="tcp"}`); v != 2 {
		t.Errorf("received tcp = %v, want 2", v)
	}
	if v := l.Metric(`les_ingest_received_total{format="wavefront",transport="http"}`); v != 2 {
		t.Errorf("received http = %v, want 2", v)
	}
	if v := l.Metric(`les_ingest_rejected_total{format="wavefront",reason="invalid_value"}`) +
		l.Metric(`les_ingest_rejected_total{format="wavefront",reason="missing_value"}`); v != 2 {
		t.Errorf("rejected = %v, want 2", v)
	}
	l.Stop()
}
