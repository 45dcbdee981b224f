package backendtest

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
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

// TestExportAndQuery writes two samples to VictoriaMetrics with its
// Prometheus text import and reads them back with Export and Query.
func TestExportAndQuery(t *testing.T) {
	vm := VictoriaMetrics(t)
	at := time.Now().Add(-time.Hour).Truncate(time.Second) // an hour back: at now, VictoriaMetrics answered the older sample
	body := fmt.Sprintf("backendtest_m{a=\"b\"} 1.5 %d\nbackendtest_m{a=\"b\"} 2.5 %d\n", at.Add(-time.Second).UnixMilli(), at.UnixMilli())
	resp, err := http.Post(vm.URL+"/api/v1/import/prometheus", "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got := vm.Export(t, `{a="b"}`)
	want := []Series{{Metric: map[string]string{"__name__": "backendtest_m", "a": "b"}, Values: []float64{1.5, 2.5},
		Timestamps: []int64{at.Add(-time.Second).UnixMilli(), at.UnixMilli()}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Export = %+v, want %+v", got, want)
	}
	var res struct {
		Data struct{ Result []struct{ Value [2]any } }
	}
	vm.Query(t, "backendtest_m", at, &res)
	if len(res.Data.Result) != 1 || res.Data.Result[0].Value[1] != "2.5" {
		t.Fatalf("Query = %+v, want one result of 2.5", res)
	}
}
