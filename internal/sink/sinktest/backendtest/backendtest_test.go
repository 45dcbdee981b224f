package backendtest

import (
	"net/http"
	"testing"
)

func TestServersStart(t *testing.T) {
	for name, start := range map[string]func(testing.TB) *Server{
		"prometheus": Prometheus, "victoria-metrics": VictoriaMetrics, "influxdb": InfluxDB,
	} {
		t.Run(name, func(t *testing.T) {
			s := start(t)
			resp, err := http.Get(s.URL + "/metrics")
			if name == "influxdb" {
				resp, err = http.Get(s.URL + "/ping")
			}
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				t.Fatalf("%s answered %d:\n%s", name, resp.StatusCode, s.Output())
			}
		})
	}
}
