package app

import (
	"net/http"
	"testing"
)

// TestQueryRequiresToken: with agent.http.token set, /query (which serves
// rolled-up data, and which `les query --token` authenticates to) refuses
// requests without the token, as the intake endpoints do.
func TestQueryRequiresToken(t *testing.T) {
	cfg := &Config{DataDir: t.TempDir()}
	cfg.Stream.Embedded.Listen = "127.0.0.1:-1"
	cfg.Agent.HTTP.Listen = "127.0.0.1:0"
	cfg.Agent.HTTP.Token = "s3cret"
	cfg.Agent.Listeners = []ListenerConfig{}
	info := startApp(t, cfg)
	url := "http://" + info.HTTP + "/query?name=m"
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/query without token: %d, want 401", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized {
		t.Fatal("/query with the token: 401")
	}
}
