package kinesis_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/les-streams/les/internal/input/kinesis/kinesistest"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/kinesis"
	"github.com/les-streams/les/internal/wire"
)

// TestLitePublishesToKinesalite publishes through the lite client (the
// Lambda extension's) and reads the records back with the SDK-based
// backend: same partition keys, hash keys and data.
func TestLitePublishesToKinesalite(t *testing.T) {
	endpoint := kinesistest.Start(t)
	kinesistest.AWSEnv(t)
	name := streamName(t)
	kinesistest.CreateStream(t, client(t, endpoint), name, 2)

	lite, err := kinesis.NewLite(kinesis.LiteConfig{Endpoint: endpoint})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lite.Transport().CloseIdleConnections)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub, err := kinesis.Open(ctx, kinesis.Config{Stream: name}, 4, kinesis.Deps{Log: quiet(), API: lite})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	var want []string
	for p := range 4 {
		data := []byte(strings.Repeat("x", p+1))
		want = append(want, string(data))
		if err := pub.Publish(ctx, stream.Record{Origin: stream.OriginIngest, Signal: wire.SignalLogs, Partition: p, ID: "id", Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	sub := open(t, endpoint, 0, nil)
	defer sub.Close()
	var mu sync.Mutex
	var got []string
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	err = sub.Consume(cctx, stream.ConsumeOptions{FromStart: true}, func(_ context.Context, ds []stream.Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		for _, d := range ds {
			got = append(got, string(d.Data))
		}
		if len(got) >= len(want) {
			stop()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("read back %q, want %q", got, want)
	}
}

// TestLiteRequestAndErrors checks the request the lite client signs and
// sends, and how error answers map to the errors the backend classifies.
func TestLiteRequestAndErrors(t *testing.T) {
	var mu sync.Mutex
	answer := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		_, _ = w.Write([]byte(`{"FailedRecordCount":1,"Records":[{"SequenceNumber":"1","ShardId":"shardId-000000000000"},{"ErrorCode":"InternalFailure","ErrorMessage":"boom"}]}`))
	}
	var seen *http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = r
		a := answer
		mu.Unlock()
		a(w)
	}))
	defer srv.Close()
	t.Setenv("AWS_ACCESS_KEY_ID", "AKID")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_SESSION_TOKEN", "tok")
	t.Setenv("AWS_REGION", "eu-west-1")
	lite, err := kinesis.NewLite(kinesis.LiteConfig{Endpoint: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Transport().CloseIdleConnections()
	ctx := context.Background()
	in := &awskinesis.PutRecordsInput{StreamName: aws.String("s"), Records: []types.PutRecordsRequestEntry{
		{Data: []byte("a"), PartitionKey: aws.String("in.logs.0")}, {Data: []byte("b"), PartitionKey: aws.String("in.logs.1")}}}
	out, err := lite.PutRecords(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(out.Records[0].SequenceNumber) != "1" || aws.ToString(out.Records[1].ErrorCode) != "InternalFailure" {
		t.Fatalf("decoded %+v", out.Records)
	}
	mu.Lock()
	h := seen.Header
	mu.Unlock()
	if h.Get("X-Amz-Target") != "Kinesis_20131202.PutRecords" || h.Get("X-Amz-Security-Token") != "tok" ||
		!strings.Contains(h.Get("Authorization"), "Credential=AKID/") || !strings.Contains(h.Get("Authorization"), "/eu-west-1/kinesis/aws4_request") {
		t.Fatalf("request headers %v", h)
	}

	for _, c := range []struct {
		status int
		body   string
		check  func(error) bool
	}{
		{400, `{"__type":"com.amazonaws.kinesis#ResourceNotFoundException","message":"no stream"}`, func(err error) bool {
			var ae interface{ ErrorCode() string }
			return errors.As(err, &ae) && ae.ErrorCode() == "ResourceNotFoundException"
		}},
		{400, `{"__type":"ProvisionedThroughputExceededException","message":"slow down"}`, func(err error) bool {
			var pt *types.ProvisionedThroughputExceededException
			return errors.As(err, &pt)
		}},
		{503, `oops`, func(err error) bool {
			var ae interface{ ErrorCode() string }
			return errors.As(err, &ae) && ae.ErrorCode() == "HTTP503"
		}},
	} {
		mu.Lock()
		answer = func(w http.ResponseWriter) { w.WriteHeader(c.status); _, _ = w.Write([]byte(c.body)) }
		mu.Unlock()
		_, err := lite.PutRecords(ctx, in)
		if err == nil || !c.check(err) {
			t.Errorf("answer %d %s: error %v", c.status, c.body, err)
		}
	}
	if _, err := lite.GetRecords(ctx, nil); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("GetRecords: %v", err)
	}
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	if _, err := kinesis.NewLite(kinesis.LiteConfig{}); err == nil {
		t.Error("no region: no error")
	}
}
