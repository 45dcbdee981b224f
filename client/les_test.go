package client_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/les-streams/les/client"
)

// TestAgainstLesUp builds cmd/les, runs `les up` with a statsd and a logs
// listener on free loopback ports, emits with the client, and reads back
// with `les tail` what les put on its stream: the same values, sources and
// tags.
func TestAgainstLesUp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs les")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "les-client-test") // not "les": a stray pkill -f "les up" must not hit it
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/les").CombinedOutput(); err != nil {
		t.Fatalf("go build ../cmd/les: %v\n%s", err, out)
	}
	statsdAddr, logsAddr := freeUDPAddr(t), freeUDPAddr(t)
	httpAddr, natsAddr := freeTCPAddr(t), freeTCPAddr(t)
	cfg := fmt.Sprintf(`data_dir: ./data
agent:
  listeners:
    - { format: statsd, transport: udp, address: %s }
    - { format: logs, transport: udp, address: %s }
  http: { listen: %s }
  batch: { flush_interval: 50ms }
stream: { embedded: { listen: %s } }
`, statsdAddr, logsAddr, httpAddr, natsAddr)
	if err := os.WriteFile(filepath.Join(dir, "les.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	up := exec.CommandContext(ctx, bin, "up", "--config", "les.yaml")
	up.Dir = dir
	pr, pw := io.Pipe()
	up.Stdout, up.Stderr = pw, pw
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- up.Wait(); pw.Close() }()
	defer func() {
		_ = up.Process.Kill()
		<-exited
	}()
	ready := make(chan struct{})
	var out strings.Builder
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "Press Ctrl-C to stop.") {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case err := <-exited:
		t.Fatalf("les up exited: %v", err)
	case <-ctx.Done():
		t.Fatal("les up did not start")
	}

	c, err := client.New(client.WithAddr(statsdAddr), client.WithLogsAddr(logsAddr),
		client.WithSource("fn-go"), client.WithTags(T("env", "prod")))
	if err != nil {
		t.Fatal(err)
	}
	c.Count("les.orders", 3, T("region", "eu|west"))
	c.Distribution("les.latency", 12.25, T("route", "/checkout"))
	c.Timing("les.handler", 1500*time.Microsecond)
	c.Event(client.Event{Title: "deploy", Text: "v42", AlertType: client.AlertWarning})
	c.Log(client.LevelError, "boom\nstack", T("requestId", "8f507cfc-xmpl-4697-b07a-ac58fc914c95"))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats().Total(); st.SentLines != 5 || st.DroppedLines != 0 {
		t.Fatalf("stats %+v", st)
	}

	tail := exec.CommandContext(ctx, bin, "tail", "--url", "nats://"+natsAddr, "--data-dir", "data", "--from-start", "--limit", "5")
	tail.Dir = dir
	got, err := tail.Output()
	if err != nil {
		t.Fatalf("les tail: %v\n%s", err, out.String())
	}
	var items []string
	for _, line := range strings.Split(strings.TrimSpace(string(got)), "\n") {
		var it struct {
			Type, Name, Kind, Source, Level, Message string
			RequestID                                string `json:"request_id"`
			Value                                    float64
			Tags, Attrs                              map[string]string
		}
		if err := json.Unmarshal([]byte(line), &it); err != nil {
			t.Fatalf("les tail line %q: %v", line, err)
		}
		items = append(items, fmt.Sprintf("%s %s %s %v source=%s tags=%v | %s %q %s attrs=%v",
			it.Type, it.Name, it.Kind, it.Value, it.Source, it.Tags, strings.ToLower(it.Level), it.Message, it.RequestID, it.Attrs))
	}
	sort.Strings(items)
	want := []string{
		`log   0 source=fn-go tags=map[] | error "boom\nstack" 8f507cfc-xmpl-4697-b07a-ac58fc914c95 attrs=map[env:prod]`,
		`log   0 source=fn-go tags=map[] | warning "v42"  attrs=map[env:prod title:deploy]`,
		`metric les.handler sample 1.5 source=fn-go tags=map[env:prod] |  ""  attrs=map[]`,
		`metric les.latency sample 12.25 source=fn-go tags=map[env:prod route:/checkout] |  ""  attrs=map[]`,
		`metric les.orders counter 3 source=fn-go tags=map[env:prod region:eu_west] |  ""  attrs=map[]`,
	}
	if diff := cmp.Diff(want, items); diff != "" {
		t.Errorf("on the stream (-want +got):\n%s\nles tail printed:\n%s", diff, got)
	}
}

func freeTCPAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
