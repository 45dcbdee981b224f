package app

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/les-streams/les/internal/model"
)

func testErrorLogs(perSource, total, maxMsg int) *errorLogs {
	return newErrorLogs(UIErrorLogsConfig{PerSource: perSource, MaxTotal: total, MaxMessage: maxMsg, MaxAge: time.Hour}, nil, nil, nil, slog.New(slog.DiscardHandler))
}

// TestErrorLogsBounds: only error-level records are kept, per_source per
// source (the newest), max_total over all (the oldest overall go first),
// messages cut at max_message on a character boundary, nothing older than
// max_age.
func TestErrorLogsBounds(t *testing.T) {
	e := testErrorLogs(3, 5, 64)
	now := time.Unix(1_780_000_000, 0).UnixNano()
	var b model.Batch
	logAt := func(src, level, msg string, ago time.Duration) {
		b.Logs = append(b.Logs, model.Log{Timestamp: now - int64(ago), Source: src, Level: level, Message: []byte(msg)})
	}
	for i, lvl := range []string{"INFO", "ERROR", "warn", "error", "Fatal", "CRITICAL", "ERROR3", "E", "", "Errorless?"} {
		logAt("a", lvl, fmt.Sprint("a", i), time.Duration(10-i)*time.Second)
	}
	logAt("a", "ERROR", "too old", 2*time.Hour)
	e.add(&b, now)
	got := e.bySrc["a"].entries
	var msgs []string
	for _, x := range got {
		msgs = append(msgs, x.Message)
	}
	// ERROR, error, Fatal, CRITICAL, ERROR3 and "Errorless?" (ERR…) are
	// errors; the source keeps its last 3.
	if strings.Join(msgs, ",") != "a5,a6,a9" || e.n != 3 {
		t.Errorf("source a keeps %v (n=%d), want a5,a6,a9", msgs, e.n)
	}
	// Two more sources: 3 + 3 more records, max_total 5: a's oldest go.
	b.Logs = b.Logs[:0]
	for i := range 3 {
		logAt("b", "ERROR", fmt.Sprint("b", i), 0)
	}
	logAt("c", "ERROR", strings.Repeat("é", 40), 0) // 80 bytes: cut to 64 at a character boundary
	e.add(&b, now)
	if e.n != 5 || len(e.bySrc["a"].entries) != 1 || e.bySrc["a"].entries[0].Message != "a9" || len(e.bySrc["b"].entries) != 3 || e.dropped.Load() != 2 {
		t.Errorf("after max_total: n=%d a=%d b=%d dropped=%d", e.n, len(e.bySrc["a"].entries), len(e.bySrc["b"].entries), e.dropped.Load())
	}
	c := e.bySrc["c"].entries[0]
	if c.Message != strings.Repeat("é", 32) || !c.Truncated || c.Size != 80 {
		t.Errorf("truncated message %q (%d bytes) truncated=%v size=%d", c.Message, len(c.Message), c.Truncated, c.Size)
	}
	// Many more records of one source: the FIFO stays bounded.
	for range 100 {
		b.Logs = b.Logs[:0]
		logAt("d", "ERROR", "x", 0)
		e.add(&b, now)
	}
	if e.n != 5 || len(e.order)-e.head > 2*5+1 || len(e.bySrc["d"].entries) != 3 {
		t.Errorf("after 100 more: n=%d fifo=%d d=%d", e.n, len(e.order)-e.head, len(e.bySrc["d"].entries))
	}
}

// TestErrorLogsEndpoint: error-level log records sent to les are served
// by /api/v1/errors per source, newest first, as sent (markup is data);
// after a restart they are read back from the stream.
func TestErrorLogsEndpoint(t *testing.T) {
	dir := t.TempDir()
	info, stop := runApp(t, queryTestConfig(t, dir))
	base := "http://" + info.HTTP
	t0 := time.Now().Add(-5 * time.Minute).Truncate(time.Second)
	var logs strings.Builder
	for i, l := range []struct{ src, level, msg string }{
		{"fn-e", "ERROR", "first failure"}, {"fn-e", "INFO", "not an error"}, {"fn-e", "error", `<script>alert(1)</script> "quoted"`},
		{"fn-f", "FATAL", "other function"},
	} {
		b, _ := json.Marshal(map[string]any{"timestamp": t0.Add(time.Duration(i) * time.Second).Format(time.RFC3339Nano), "source": l.src, "level": l.level,
			"message": l.msg, "request_id": fmt.Sprintf("req-%d", i)})
		logs.Write(append(b, '\n'))
	}
	post(t, base+"/logs?f=logs", logs.String())
	type answer struct {
		Errors []struct {
			Timestamp time.Time `json:"timestamp"`
			Source    string    `json:"source"`
			RequestID string    `json:"request_id"`
			Level     string    `json:"level"`
			Message   string    `json:"message"`
		} `json:"errors"`
		Sources []struct {
			Source string `json:"source"`
			Kept   int    `json:"kept"`
		} `json:"sources"`
		Store struct {
			Kept       int  `json:"kept"`
			PerSource  int  `json:"per_source"`
			Rebuilding bool `json:"rebuilding"`
		} `json:"store"`
	}
	get := func(q string) answer {
		t.Helper()
		resp, err := http.Get(base + "/api/v1/errors" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var a answer
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &a) != nil {
			t.Fatalf("/api/v1/errors%s: %d %s", q, resp.StatusCode, body)
		}
		return a
	}
	check := func(t *testing.T) {
		// The reader is asynchronous: poll les (another goroutine's
		// progress over the stream) until it holds the records.
		waitFor(t, func() bool { return get("").Store.Kept == 3 }, "three error records kept")
		a := get("?source=fn-e")
		if len(a.Errors) != 2 || a.Errors[0].Message != `<script>alert(1)</script> "quoted"` || a.Errors[0].RequestID != "req-2" || a.Errors[0].Level != "ERROR" ||
			a.Errors[1].Message != "first failure" || !a.Errors[1].Timestamp.Equal(t0) || a.Store.PerSource != 20 {
			t.Errorf("fn-e errors: %+v", a)
		}
		all := get("?limit=1")
		if len(all.Errors) != 1 || all.Errors[0].Source != "fn-f" || len(all.Sources) != 2 || all.Sources[0].Source != "fn-e" || all.Sources[0].Kept != 2 {
			t.Errorf("all sources, limit 1: %+v", all)
		}
		if a := get("?source=nobody"); len(a.Errors) != 0 {
			t.Errorf("unknown source: %+v", a)
		}
	}
	check(t)
	if resp, err := http.Get(base + "/api/v1/errors?limit=0"); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("limit=0: %v %v", resp.Status, err)
	}
	stop()
	info, _ = runApp(t, queryTestConfig(t, dir))
	base = "http://" + info.HTTP
	t.Run("after restart", check)
}

// TestRejectedEndpoint: the last rejected lines of a format, with their
// reason, escaped, with the token replaced — and never a header.
func TestRejectedEndpoint(t *testing.T) {
	cfg := queryTestConfig(t, t.TempDir())
	cfg.Agent.HTTP.Token = "tok-123456"
	info, _ := runApp(t, cfg)
	base := "http://" + info.HTTP
	req, _ := http.NewRequest(http.MethodPost, base+"/report?f=wavefront", strings.NewReader("good.metric 1 source=a\nbad metric with spaces\nm notanumber source=tok-123456\x1b[2J\nesc \xff\xfe 1\n"))
	req.Header.Set("Authorization", "Bearer tok-123456")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	req, _ = http.NewRequest(http.MethodGet, base+"/api/v1/rejected", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without the token: %v %v", resp.Status, err)
	}
	req.Header.Set("Authorization", "Bearer tok-123456")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var a struct {
		Rejected []struct {
			Format, Transport, Reason, Input string
			Size                             int
		} `json:"rejected"`
		Totals map[string]uint64 `json:"totals"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if strings.Contains(string(body), "tok-123456") || strings.Contains(string(body), "Bearer") {
		t.Errorf("the token is in the answer: %s", body)
	}
	inputs := map[string]string{}
	for _, r := range a.Rejected {
		if r.Format != "wavefront" || r.Transport != "http" || r.Reason == "" {
			t.Errorf("rejected %+v", r)
		}
		inputs[r.Input] = r.Reason
	}
	for _, want := range []string{"bad metric with spaces", `m notanumber source=[redacted]\x1b[2J`, `esc \xff\xfe 1`} {
		if _, ok := inputs[want]; !ok {
			t.Errorf("no rejected input %q in %v", want, inputs)
		}
	}
	if len(a.Rejected) != 3 || a.Totals["wavefront"] != 3 {
		t.Errorf("%d rejected, totals %v: %s", len(a.Rejected), a.Totals, body)
	}
}

// TestUIConfig: ui.* bounds reach the history and the error store, and a
// bad value is reported with its file, line and key.
func TestUIConfig(t *testing.T) {
	p := filepath.Join(t.TempDir(), "les.yaml")
	if err := os.WriteFile(p, []byte("ui:\n  history:\n    retention: 2h\n    max_series: -3\n  error_logs:\n    max_message: 10\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	for _, want := range []string{p + ":4:", "ui.history.max_series", "max_series -3 is not in", p + ":6:", "ui.error_logs.max_message"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
	cfg := queryTestConfig(t, t.TempDir())
	cfg.UI.History.Retention, cfg.UI.History.MaxSeries, cfg.UI.History.MaxQueryPoints = 2*time.Hour, 7, 100
	info, _ := runApp(t, cfg)
	base := "http://" + info.HTTP
	resp, err := http.Get(base + "/api/v1/names")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var names struct {
		History historyJSON `json:"history"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&names); err != nil {
		t.Fatal(err)
	}
	if names.History.MaxSeries != 7 || names.History.Retention != "2h0m0s" {
		t.Errorf("history %+v, want max_series 7, retention 2h", names.History)
	}
	if _, status, body := getQuery(t, base, vals("name", "x", "from", "-2h")); status != http.StatusBadRequest || !strings.Contains(body, "more than 100") {
		t.Errorf("120 steps with max_query_points 100: %d %q", status, body)
	}
}
