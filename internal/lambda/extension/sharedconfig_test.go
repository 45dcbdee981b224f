package extension_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/les-streams/les/internal/lambda/extension"
	"github.com/les-streams/les/internal/model"
	"github.com/les-streams/les/internal/wire"
)

// sharedYAML is a les.yaml as les up reads it (every key of its agent
// section, and its other sections), for LES_CONFIG; agent is the body of
// the agent section.
func sharedYAML(t *testing.T, agent string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "les.yaml")
	y := "data_dir: /tmp/les\nagent:\n" + agent + "  spool: {dir: " + filepath.Join(dir, "spool") + "}\n" +
		"stream: {kind: kinesis, partitions: 2, kinesis: {stream: s}}\n" +
		"sinks: []\nui: {history: {retention: 24h}}\nlog: {level: info}\n"
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSharedAgentConfig: the extension takes the agent section of a
// les.yaml shared with les up. agent.default_source replaces the function
// name as the default source (LES_SOURCE still overrides it); a
// listener's flavor and source are read as les up reads them; max_body
// (les up's otlp listeners) is refused with a message saying so; the
// token of agent.http may come from the environment through ${NAME}, as
// in les up.
func TestSharedAgentConfig(t *testing.T) {
	t.Setenv("LES_TEST_SHARED_TOKEN", "from-env")
	load := func(agent string, env map[string]string) (*extension.Config, error) {
		p := sharedYAML(t, agent)
		return extension.Load(func(k string) string {
			if k == "LES_CONFIG" {
				return p
			}
			return env[k]
		})
	}
	fn := map[string]string{"AWS_LAMBDA_FUNCTION_NAME": "fn"}
	full := "  default_source: checkout\n" +
		"  http: {listen: 127.0.0.1:2880, token: ${LES_TEST_SHARED_TOKEN}, protect_metrics: true}\n" +
		"  batch: {flush_interval: 100ms}\n" +
		"  listeners:\n" +
		"    - {format: statsd, transport: udp, address: 127.0.0.1:8125, flavor: etsy, source: statsd-src}\n" +
		"    - {format: wavefront, transport: tcp, address: 127.0.0.1:2878}\n"
	c, err := load(full, fn)
	if err != nil {
		t.Fatal(err)
	}
	if c.Source != "checkout" {
		t.Errorf("source %q, want agent.default_source checkout", c.Source)
	}
	if c.HTTP.Token != "from-env" {
		t.Errorf("agent.http.token %q, want ${LES_TEST_SHARED_TOKEN} = from-env", c.HTTP.Token)
	}
	if l := c.Listeners[0]; l.Flavor != "etsy" || l.Source != "statsd-src" {
		t.Errorf("statsd listener %+v, want flavor etsy and source statsd-src", l)
	}
	c, err = load(full, map[string]string{"AWS_LAMBDA_FUNCTION_NAME": "fn", "LES_SOURCE": "env-src"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Source != "env-src" {
		t.Errorf("source %q with LES_SOURCE=env-src, want env-src", c.Source)
	}
	c, err = load("  listeners: []\n", fn)
	if err != nil {
		t.Fatal(err)
	}
	if c.Source != "fn" {
		t.Errorf("source %q without agent.default_source, want the function name fn", c.Source)
	}
	for _, bad := range []struct{ listener, want string }{
		{"{format: statsd, transport: udp, address: 127.0.0.1:8125, flavor: graphite}", `flavor "graphite" is not one of dogstatsd, etsy`},
		{"{format: wavefront, transport: tcp, address: 127.0.0.1:2878, flavor: etsy}", "flavor is a statsd setting"},
		{"{format: wavefront, transport: tcp, address: 127.0.0.1:2878, max_body: 1000}", "max_body bounds les up's otlp listeners, which the extension does not support"},
	} {
		_, err := load("  listeners:\n    - "+bad.listener+"\n", fn)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("listener %s: error %v, want one saying %q", bad.listener, err, bad.want)
		}
	}
}

// TestSharedAgentConfigHonoured: on the wire, items that name no source
// carry agent.default_source, or their listener's source; a statsd
// listener with flavor etsy reads a signed gauge as a change
// (GaugeDelta), the default flavor as a value.
func TestSharedAgentConfigHonoured(t *testing.T) {
	p := sharedYAML(t, "  default_source: checkout\n  listeners:\n"+
		"    - {format: statsd, transport: udp, address: \"127.0.0.1:0\", flavor: etsy, source: etsy-src}\n"+
		"    - {format: statsd, transport: udp, address: \"127.0.0.1:0\"}\n")
	// A refused file makes the extension idle, never ready: fail first.
	if _, err := extension.Load(func(k string) string { return map[string]string{"LES_CONFIG": p}[k] }); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, map[string]string{"LES_CONFIG": p})
	h.api.telemetryErr = "Telemetry.NotSupported" // background flushes: next at once
	h.start()
	var addrs []string
	for _, l := range h.info.Listeners {
		if f := strings.Fields(l); f[0] == "statsd" {
			addrs = append(addrs, f[2])
		}
	}
	if len(addrs) != 2 {
		t.Fatalf("listeners %v, want two statsd ones", h.info.Listeners)
	}
	for _, a := range addrs { // in the order of the file
		before := h.metric(`les_ingest_received_total{format="statsd",transport="udp"}`)
		c, err := net.Dial("udp", a)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("g:+3|g")); err != nil {
			t.Fatal(err)
		}
		c.Close()
		eventually(t, func() bool { return h.metric(`les_ingest_received_total{format="statsd",transport="udp"}`) > before })
	}
	h.api.waitNext()
	h.api.send(shutdownEvent("spindown", time.Now().Add(2*time.Second)))
	if err := h.wait(); err != nil {
		t.Fatal(err)
	}
	got := map[string]model.Kind{}
	var dec wire.Decoder
	for _, r := range h.store.Records() {
		var b model.Batch
		if _, err := dec.Decode(&b, r.Data); err != nil {
			t.Fatal(err)
		}
		for _, m := range b.Metrics {
			if m.Name == "g" {
				got[strings.Clone(m.Source)] = m.Kind
			}
		}
	}
	want := map[string]model.Kind{"etsy-src": model.GaugeDelta, "checkout": model.Gauge}
	if len(got) != len(want) || got["etsy-src"] != want["etsy-src"] || got["checkout"] != want["checkout"] {
		t.Errorf("gauge g by source: %v, want %v\n%s", got, want, h.log.String())
	}
}
