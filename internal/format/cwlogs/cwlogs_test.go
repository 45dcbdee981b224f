package cwlogs

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/les-streams/les/internal/model"
)

func gz(s string) []byte {
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, 6)
	w.Write([]byte(s))
	w.Close()
	return buf.Bytes()
}

func b64(b []byte) []byte { return []byte(base64.StdEncoding.EncodeToString(b)) }

const lambdaDoc = `{"messageType":"DATA_MESSAGE","owner":"123456789012","logGroup":"/aws/lambda/orders-api","logStream":"2024/03/04/[$LATEST]a1b2c3d4e5f60718293a4b5c6d7e8f90","subscriptionFilters":["to-kinesis","other"],"logEvents":[` +
	`{"id":"37806750452393245512395638612893483648581215346040012800","timestamp":1709572958033,"message":"START RequestId: 8f507cfc-xmpl-4697-b07a-ac58fc914c95 Version: $LATEST\n"},` +
	`{"id":"37806750452393245512395638612893483648581215346040012801","timestamp":1709572958040,"message":"2024-03-04T17:22:38.040Z\t8f507cfc-xmpl-4697-b07a-ac58fc914c95\tINFO\tcreated order \u00e9 42\n"},` +
	`{"id":"37806750452393245512395638612893483648581215346040012802","timestamp":1709572958041,"message":"{\"timestamp\":\"2024-03-04T17:22:38.041Z\",\"level\":\"ERROR\",\"requestId\":\"8f507cfc-xmpl-4697-b07a-ac58fc914c95\",\"message\":\"payment failed\"}"},` +
	`{"id":"37806750452393245512395638612893483648581215346040012803","timestamp":1709572958050,"message":"REPORT RequestId: 8f507cfc-xmpl-4697-b07a-ac58fc914c95\tDuration: 15.74 ms\tBilled Duration: 16 ms\tMemory Size: 128 MB\tMax Memory Used: 56 MB\t\n"}` +
	`]}`

const controlDoc = `{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"","subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1510109208016,"message":"CWL CONTROL MESSAGE: Checking health of destination Kinesis stream."}]}`

type out struct {
	TS                      int64
	Source, Req, Level, Msg string
	Attrs                   string
}

func flat(b *model.Batch) []out {
	var o []out
	for _, l := range b.Logs {
		var a []string
		for _, t := range l.Attrs {
			if t.Key == AttrEventID {
				continue
			}
			a = append(a, t.Key+"="+t.Value)
		}
		o = append(o, out{l.Timestamp / 1e6, l.Source, l.RequestID, l.Level, string(l.Message), strings.Join(a, ",")})
	}
	return o
}

func TestDecodeForms(t *testing.T) {
	attrs := "log_group=/aws/lambda/orders-api,log_stream=2024/03/04/[$LATEST]a1b2c3d4e5f60718293a4b5c6d7e8f90,owner=123456789012,subscription_filters=to-kinesis,other"
	want := []out{
		{1709572958033, "orders-api", "", "", "START RequestId: 8f507cfc-xmpl-4697-b07a-ac58fc914c95 Version: $LATEST", attrs},
		{1709572958040, "orders-api", "8f507cfc-xmpl-4697-b07a-ac58fc914c95", "INFO", "created order é 42", attrs},
		{1709572958041, "orders-api", "8f507cfc-xmpl-4697-b07a-ac58fc914c95", "ERROR", "payment failed", attrs},
		{1709572958050, "orders-api", "", "", "REPORT RequestId: 8f507cfc-xmpl-4697-b07a-ac58fc914c95\tDuration: 15.74 ms\tBilled Duration: 16 ms\tMemory Size: 128 MB\tMax Memory Used: 56 MB\t", attrs},
	}
	forms := map[string][]byte{
		"gzip":              gz(lambdaDoc),
		"base64":            b64(gz(lambdaDoc)),
		"base64 wrapped":    append(b64(gz(lambdaDoc)), '\n'),
		"envelope":          []byte(`{"awslogs":{"data":"` + string(b64(gz(lambdaDoc))) + `"}}`),
		"plain json":        []byte(lambdaDoc),
		"multi-member gzip": append(gz(lambdaDoc[:100]), gz(lambdaDoc[100:])...),
	}
	for name, data := range forms {
		t.Run(name, func(t *testing.T) {
			var b model.Batch
			orig := bytes.Clone(data)
			info, err := Decode(&b, data)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(orig, data) {
				t.Error("input modified")
			}
			if info.Control || info.Events != 4 || info.Source != "orders-api" || info.Owner != "123456789012" ||
				!cmp.Equal(info.SubscriptionFilters, []string{"to-kinesis", "other"}) || info.MessageType != DataMessage {
				t.Errorf("info %+v", info)
			}
			if diff := cmp.Diff(want, flat(&b)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if len(b.Rejects) != 0 {
				t.Errorf("rejects %v", b.Rejects)
			}
			if id, _ := b.Logs[0].Attrs.Get(AttrEventID); id != "37806750452393245512395638612893483648581215346040012800" {
				t.Errorf("event id %q", id)
			}
		})
	}
}

func TestControl(t *testing.T) {
	var b model.Batch
	info, err := Decode(&b, b64(gz(controlDoc)))
	if err != nil || !info.Control || info.MessageType != ControlMessage || b.Len() != 0 {
		t.Fatalf("info %+v err %v len %d", info, err, b.Len())
	}
}

func TestNonLambdaGroupAndBadEvents(t *testing.T) {
	doc := `{"messageType":"DATA_MESSAGE","owner":"111111111111","logGroup":"CloudTrail/logs","logStream":"s","subscriptionFilters":["Destination"],"logEvents":[` +
		`{"id":"1","timestamp":1432826855000,"message":"{\"eventVersion\":\"1.03\"}"},` +
		`{"id":"2","message":"no timestamp"},` +
		`7,` +
		`{"id":"3","timestamp":1432826855001,"message":"bad \u00ff ok"}]}`
	var b model.Batch
	info, err := Decode(&b, gz(doc))
	if err != nil {
		t.Fatal(err)
	}
	if info.Source != "CloudTrail/logs" || info.Events != 2 || b.Logs[0].Source != "CloudTrail/logs" {
		t.Fatalf("info %+v logs %+v", info, flat(&b))
	}
	if v, _ := b.Logs[0].Attrs.Get("eventVersion"); v != "1.03" {
		t.Errorf("json attrs %v", b.Logs[0].Attrs)
	}
	var reasons []string
	for _, r := range b.Rejects {
		reasons = append(reasons, r.Reason)
	}
	if diff := cmp.Diff([]string{ReasonInvalidEvent, ReasonInvalidEvent}, reasons); diff != "" {
		t.Error(diff)
	}
}

func TestErrors(t *testing.T) {
	full := gz(lambdaDoc)
	bomb := gz(`{"messageType":"DATA_MESSAGE","logEvents":[{"timestamp":1,"message":"` + strings.Repeat("A", 2<<20) + `"}]}`)
	tests := []struct {
		name string
		data []byte
		dec  Decoder
		want error
	}{
		{"truncated gzip", full[:len(full)/2], Decoder{}, ErrGzip},
		{"truncated header", full[:5], Decoder{}, ErrGzip},
		{"bad base64", []byte("H4sI!!!!"), Decoder{}, ErrBase64},
		{"empty", nil, Decoder{}, ErrBase64},
		{"base64 of text", b64([]byte("hello")), Decoder{}, ErrGzip},
		{"bad json", gz(`{"messageType":`), Decoder{}, ErrJSON},
		{"envelope without data", []byte(`{"awslogs":{}}`), Decoder{}, ErrJSON},
		{"envelope bad base64", []byte(`{"awslogs":{"data":"%%%"}}`), Decoder{}, ErrBase64},
		{"unknown message type", gz(`{"messageType":"OTHER","logEvents":[]}`), Decoder{}, ErrMessageType},
		{"logEvents not array", gz(`{"messageType":"DATA_MESSAGE","logEvents":{}}`), Decoder{}, ErrJSON},
		{"gzip bomb", bomb, Decoder{MaxDecompressed: 1 << 20}, ErrTooLarge},
		{"base64 too large", b64(bomb), Decoder{MaxDecompressed: 1 << 10}, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b model.Batch
			_, err := tt.dec.Decode(&b, tt.data)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if b.Len() != 0 {
				t.Errorf("appended %d items on error", b.Len())
			}
			t.Log(err)
		})
	}
}

func TestMessageTooLong(t *testing.T) {
	doc := `{"messageType":"DATA_MESSAGE","logGroup":"/aws/lambda/f","logEvents":[{"timestamp":1,"message":"` + strings.Repeat("x", 2000) + `"},{"timestamp":2,"message":"ok"}]}`
	var b model.Batch
	info, err := (&Decoder{MaxMessageLen: 1000}).Decode(&b, gz(doc))
	if err != nil || info.Events != 1 || len(b.Rejects) != 1 || b.Rejects[0].Reason != "line_too_long" {
		t.Fatalf("info %+v err %v rejects %v", info, err, b.Rejects)
	}
}

func BenchmarkDecode(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"messageType":"DATA_MESSAGE","owner":"123456789012","logGroup":"/aws/lambda/orders-api","logStream":"s","subscriptionFilters":["f"],"logEvents":[`)
	for i := range 100 {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`{"id":"37806750452393245512395638612893483648581215346040012801","timestamp":1709572958040,"message":"2024-03-04T17:22:38.040Z\t8f507cfc-xmpl-4697-b07a-ac58fc914c95\tINFO\tcreated order 42\n"}`)
	}
	sb.WriteString(`]}`)
	data := gz(sb.String())
	var batch model.Batch
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		batch.Reset()
		if _, err := Decode(&batch, data); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(100*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func FuzzDecode(f *testing.F) {
	f.Add(gz(lambdaDoc))
	f.Add([]byte(lambdaDoc))
	f.Add(b64(gz(controlDoc)))
	f.Add([]byte(`{"awslogs":{"data":"` + string(b64(gz(lambdaDoc))) + `"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var b model.Batch
		orig := bytes.Clone(data)
		info, err := (&Decoder{MaxDecompressed: 1 << 20}).Decode(&b, data)
		if err != nil && b.Len() != 0 {
			t.Fatal("items appended on error")
		}
		if info.Events != len(b.Logs) {
			t.Fatalf("events %d logs %d", info.Events, len(b.Logs))
		}
		if !bytes.Equal(orig, data) {
			t.Fatal("input modified")
		}
	})
}
