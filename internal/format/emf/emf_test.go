package emf

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/les-streams/les/internal/model"
)

func render(b *model.Batch) []string {
	var out []string
	for _, m := range b.Metrics {
		s := fmt.Sprintf("%s@%s %s %g t=%d", m.Name, m.Source, m.Kind, m.Value, m.Timestamp/1e6)
		for _, t := range m.Tags {
			s += " " + t.Key + "=" + t.Value
		}
		out = append(out, s)
	}
	return out
}

const ts = `"Timestamp":1574109732004`

func doc(metrics, dims, rest string) string {
	return `{"_aws":{` + ts + `,"CloudWatchMetrics":[{"Namespace":"MyApp","Dimensions":` + dims + `,"Metrics":` + metrics + `}]}` + rest + `}`
}

func TestDecodeDoc(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		want   []string
		reason string
	}{
		{"spec example", `{"_aws":{"Timestamp":1574109732004,"CloudWatchMetrics":[{"Namespace":"lambda-function-metrics","Dimensions":[["functionVersion"]],"Metrics":[{"Name":"time","Unit":"Milliseconds","StorageResolution":60}]}]},"functionVersion":"$LATEST","time":100,"requestId":"989ffbf8-9ace-4817-a57c-e4dd734019ee"}`,
			[]string{"time@def sample 100 t=1574109732004 functionVersion=$LATEST namespace=lambda-function-metrics unit=Milliseconds"}, ""},
		{"two dimension sets", doc(`[{"Name":"ProcessingLatency","Unit":"Milliseconds"}]`, `[["Operation"],["Operation","Cell"]]`, `,"Operation":"Aggregator","Cell":"001","ProcessingLatency":100`),
			[]string{
				"ProcessingLatency@def sample 100 t=1574109732004 Operation=Aggregator namespace=MyApp unit=Milliseconds",
				"ProcessingLatency@def sample 100 t=1574109732004 Cell=001 Operation=Aggregator namespace=MyApp unit=Milliseconds",
			}, ""},
		{"agent example with LogGroupName", `{"_aws":{"Timestamp":1574109732004,"LogGroupName":"Foo","CloudWatchMetrics":[{"Namespace":"MyApp","Dimensions":[["Operation"]],"Metrics":[{"Name":"ProcessingLatency","Unit":"Milliseconds","StorageResolution":60}]}]},"Operation":"Aggregator","ProcessingLatency":100}`,
			[]string{"ProcessingLatency@def sample 100 t=1574109732004 Operation=Aggregator namespace=MyApp unit=Milliseconds"}, ""},
		{"array values", doc(`[{"Name":"Latency"}]`, `[[]]`, `,"Latency":[12,15,15]`),
			[]string{"Latency@def sample 12 t=1574109732004 namespace=MyApp", "Latency@def sample 15 t=1574109732004 namespace=MyApp", "Latency@def sample 15 t=1574109732004 namespace=MyApp"}, ""},
		{"empty dimensions list", doc(`[{"Name":"C","Unit":"Count"}]`, `[]`, `,"C":1`),
			[]string{"C@def sample 1 t=1574109732004 namespace=MyApp unit=Count"}, ""},
		{"function name source", doc(`[{"Name":"C"}]`, `[["FunctionName","ServiceName"]]`, `,"FunctionName":"orders","ServiceName":"svc","C":2`),
			[]string{"C@orders sample 2 t=1574109732004 FunctionName=orders ServiceName=svc namespace=MyApp"}, ""},
		{"values and counts", doc(`[{"Name":"H"}]`, `[[]]`, `,"H":{"Values":[1.5,3],"Counts":[2,1],"Max":3,"Min":1.5,"Count":3,"Sum":6}`),
			[]string{"H@def sample 1.5 t=1574109732004 namespace=MyApp", "H@def sample 1.5 t=1574109732004 namespace=MyApp", "H@def sample 3 t=1574109732004 namespace=MyApp"}, ""},
		{"dimension named namespace wins", doc(`[{"Name":"C"}]`, `[["namespace","namespace"]]`, `,"namespace":"mine","C":1`),
			[]string{"C@def sample 1 t=1574109732004 namespace=mine"}, ""},
		{"escaped key", doc(`[{"Name":"L\u0061t"}]`, `[["Op\u0065ration"]]`, `,"Operation":"A","Lat":5`),
			[]string{"Lat@def sample 5 t=1574109732004 Operation=A namespace=MyApp"}, ""},
		{"lambda prefix", "2024-01-01T00:00:00.000Z\t8f507cfc-xmpl-4697-b07a-ac58fc914c95\tINFO\t" + doc(`[{"Name":"C"}]`, `[[]]`, `,"C":1`),
			[]string{"C@def sample 1 t=1574109732004 namespace=MyApp"}, ""},
		{"empty CloudWatchMetrics", `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[]}}`, nil, ""},
		{"not json", `hello`, nil, ReasonInvalidJSON},
		{"truncated", `{"_aws":{"Timestamp":1`, nil, ReasonInvalidJSON},
		{"array root", `[1]`, nil, ReasonInvalidJSON},
		{"missing _aws", `{"a":1}`, nil, ReasonMissingAWS},
		{"_aws not object", `{"_aws":[]}`, nil, ReasonMissingAWS},
		{"missing timestamp", `{"_aws":{"CloudWatchMetrics":[]}}`, nil, ReasonMissingTimestamp},
		{"string timestamp", `{"_aws":{"Timestamp":"1574109732004","CloudWatchMetrics":[]}}`, nil, ReasonInvalidTimestamp},
		{"fractional timestamp", `{"_aws":{"Timestamp":1.5,"CloudWatchMetrics":[]}}`, nil, ReasonInvalidTimestamp},
		{"negative timestamp", `{"_aws":{"Timestamp":-1,"CloudWatchMetrics":[]}}`, nil, ReasonInvalidTimestamp},
		{"missing CloudWatchMetrics", `{"_aws":{"Timestamp":1}}`, nil, ReasonInvalidMetadata},
		{"missing namespace", `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Dimensions":[[]],"Metrics":[]}]}}`, nil, ReasonInvalidMetadata},
		{"dimension set not array", doc(`[]`, `["a"]`, ``), nil, ReasonInvalidMetadata},
		{"metric without name", doc(`[{"Unit":"Count"}]`, `[[]]`, ``), nil, ReasonInvalidMetadata},
		{"too many metrics", doc("["+strings.Repeat(`{"Name":"C"},`, 100)+`{"Name":"C"}]`, `[[]]`, `,"C":1`), nil, ReasonTooManyMetrics},
		{"100 metrics ok", doc("["+strings.Repeat(`{"Name":"C"},`, 99)+`{"Name":"C"}]`, `[["D"]]`, `,"C":1,"D":"x"`), nil, "count:100"},
		{"too many dimensions", doc(`[{"Name":"C"}]`, `[[`+strings.Repeat(`"D",`, 30)+`"D"]]`, `,"C":1,"D":"x"`), nil, ReasonTooManyDimensions},
		{"too many values", doc(`[{"Name":"C"}]`, `[[]]`, `,"C":[`+strings.Repeat(`1,`, 100)+`1]`), nil, ReasonTooManyValues},
		{"100 values ok", doc(`[{"Name":"C"}]`, `[[]]`, `,"C":[`+strings.Repeat(`1,`, 99)+`1]`), nil, "count:100"},
		{"dimension missing", doc(`[{"Name":"C"}]`, `[["Op"]]`, `,"C":1`), nil, ReasonInvalidDimension},
		{"dimension number", doc(`[{"Name":"C"}]`, `[["Op"]]`, `,"C":1,"Op":5`), nil, ReasonInvalidDimension},
		{"dimension too long", doc(`[{"Name":"C"}]`, `[["Op"]]`, `,"C":1,"Op":"`+strings.Repeat("x", 1025)+`"`), nil, ReasonInvalidDimension},
		{"metric missing", doc(`[{"Name":"C"}]`, `[[]]`, ``), nil, ReasonInvalidMetricValue},
		{"metric string", doc(`[{"Name":"C"}]`, `[[]]`, `,"C":"1"`), nil, ReasonInvalidMetricValue},
		{"metric array with string", doc(`[{"Name":"C"}]`, `[[]]`, `,"C":[1,"2"]`), nil, ReasonInvalidMetricValue},
		{"nested target is not top level", doc(`[{"Name":"A.a"}]`, `[[]]`, `,"A":{"a":1}`), nil, ReasonInvalidMetricValue},
		{"bad unit", doc(`[{"Name":"C","Unit":"Furlongs"}]`, `[[]]`, `,"C":1`), nil, ReasonInvalidUnit},
		{"bad resolution", doc(`[{"Name":"C","StorageResolution":5}]`, `[[]]`, `,"C":1`), nil, ReasonInvalidResolution},
		{"histogram count mismatch", doc(`[{"Name":"H"}]`, `[[]]`, `,"H":{"Values":[1,2],"Counts":[1]}`), nil, ReasonInvalidMetricValue},
		{"histogram too many", doc(`[{"Name":"H"}]`, `[[]]`, `,"H":{"Values":[1],"Counts":[10001]}`), nil, ReasonTooManyValues},
		{"second directive invalid drops all", `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"A","Dimensions":[[]],"Metrics":[{"Name":"C"}]},{"Namespace":"B","Dimensions":[["X"]],"Metrics":[{"Name":"C"}]}]},"C":1}`, nil, ReasonInvalidDimension},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b model.Batch
			d := Decoder{DefaultSource: "def"}
			n, reason := d.DecodeDoc(&b, []byte(tt.in))
			if strings.HasPrefix(tt.reason, "count:") {
				if reason != "" || fmt.Sprint(n) != tt.reason[6:] {
					t.Fatalf("n=%d reason=%q", n, reason)
				}
				return
			}
			if reason != tt.reason {
				t.Errorf("reason %q, want %q", reason, tt.reason)
			}
			if n != len(b.Metrics) {
				t.Errorf("n=%d, metrics %d", n, len(b.Metrics))
			}
			if diff := cmp.Diff(tt.want, render(&b)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if reason != "" && len(b.Arena) != 0 {
				t.Errorf("arena not truncated: %d", len(b.Arena))
			}
		})
	}
}

func TestDecodeStream(t *testing.T) {
	good := doc(`[{"Name":"C"}]`, `[[]]`, `,"C":1`)
	pretty := "{\n  \"_aws\": {\"Timestamp\": 1574109732004, \"CloudWatchMetrics\": [{\"Namespace\": \"MyApp\", \"Dimensions\": [[]], \"Metrics\": [{\"Name\": \"C\"}]}]},\n  \"C\": 2\n}"
	payload := good + "\n" + `{"a":1}` + "\n" + "garbage line\n{\"broken\": \n" + pretty + "\n"
	var b model.Batch
	var d Decoder
	if err := d.Decode(&b, []byte(payload)); err != nil {
		t.Fatal(err)
	}
	if len(b.Metrics) != 2 || b.Metrics[1].Value != 2 {
		t.Fatalf("metrics %v", render(&b))
	}
	var reasons []string
	for _, r := range b.Rejects {
		reasons = append(reasons, r.Reason)
	}
	if diff := cmp.Diff([]string{ReasonMissingAWS, ReasonInvalidJSON, ReasonInvalidJSON}, reasons); diff != "" {
		t.Error(diff)
	}
}

var benchDoc = []byte(`{"_aws":{"Timestamp":1574109732004,"CloudWatchMetrics":[{"Namespace":"orders-service","Dimensions":[["FunctionName"],["FunctionName","Operation"]],"Metrics":[{"Name":"ProcessingLatency","Unit":"Milliseconds","StorageResolution":60},{"Name":"ItemsProcessed","Unit":"Count"}]}]},"FunctionName":"orders-api","Operation":"CreateOrder","ProcessingLatency":[12.5,15.25,9.75],"ItemsProcessed":3,"requestId":"989ffbf8-9ace-4817-a57c-e4dd734019ee","customer":"c-1234","region":"eu-west-1"}`)

func TestAllocs(t *testing.T) {
	var b model.Batch
	var d Decoder
	d.Decode(&b, benchDoc)
	if len(b.Metrics) != 8 {
		t.Fatalf("got %d metrics", len(b.Metrics))
	}
	if n := testing.AllocsPerRun(100, func() { b.Reset(); d.Decode(&b, benchDoc) }); n > 0 {
		t.Errorf("allocs = %v", n)
	}
}

func BenchmarkDecode(b *testing.B) {
	var batch model.Batch
	d := Decoder{DefaultSource: "x"}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchDoc)))
	for b.Loop() {
		batch.Reset()
		_ = d.Decode(&batch, benchDoc)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "docs/s")
}

func FuzzDecode(f *testing.F) {
	f.Add(benchDoc)
	f.Add([]byte(doc(`[{"Name":"H"}]`, `[[]]`, `,"H":{"Values":[1.5,3],"Counts":[2,1]}`)))
	f.Add([]byte("2024-01-01T00:00:00.000Z\t8f507cfc-xmpl-4697-b07a-ac58fc914c95\tINFO\t{\"_aws\":{}}\n{\"a\":1}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var b model.Batch
		var d Decoder
		_ = d.Decode(&b, data)
		for _, m := range b.Metrics {
			if !model.IsFinite(m.Value) || m.Kind != model.Sample {
				t.Fatalf("bad metric %+v", m)
			}
		}
	})
}
