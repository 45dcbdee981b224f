package kinesis_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"go.uber.org/goleak"
	"gopkg.in/yaml.v3"

	"github.com/les-streams/les/internal/input/kinesis/kinesistest"
	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/kinesis"
	"github.com/les-streams/les/internal/stream/streamtest"
	"github.com/les-streams/les/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

// streamName is a Kinesis stream name for t (a subtest's name is unique).
func streamName(t testing.TB) string {
	n := unsafeName.ReplaceAllString(t.Name(), "-")
	return n[max(0, len(n)-128):]
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// open opens a stream of streamtest.Partitions partitions named after t,
// creating it with shards shards the first time.
func open(t testing.TB, endpoint string, shards int, reg *selfmetric.Registry) *kinesis.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := kinesis.Config{Stream: streamName(t), Endpoint: endpoint, CreateShards: shards, PollInterval: kinesis.MinPollInterval}
	s, err := kinesis.Open(ctx, cfg, streamtest.Partitions, kinesis.Deps{Log: quiet(), Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// client is a raw Kinesis client for endpoint whose connections are
// closed when the test ends.
func client(t testing.TB, endpoint string) *awskinesis.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	return awskinesis.New(awskinesis.Options{Region: kinesistest.Region, BaseEndpoint: aws.String(endpoint),
		Credentials: credentials.NewStaticCredentialsProvider("x", "x", ""), HTTPClient: &http.Client{Transport: tr}})
}

// TestConformance runs the stream conformance suite against kinesalite on
// streams of 2 shards, so that pairs of logical partitions share a shard.
func TestConformance(t *testing.T) {
	endpoint := kinesistest.Start(t)
	kinesistest.AWSEnv(t)
	streamtest.Run(t, func(t *testing.T) stream.Stream { return open(t, endpoint, 2, nil) })
}

// TestResharding splits a shard and merges the children back while
// records are published: a consumer from the start sees every record once
// and each logical partition in publish order, parents before children;
// consumers of some partitions read only the shards holding them.
func TestResharding(t *testing.T) {
	endpoint := kinesistest.Start(t)
	kinesistest.AWSEnv(t)
	c := client(t, endpoint)
	s := open(t, endpoint, 1, nil)
	defer s.Close()
	name := streamName(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	all := recs(60)
	publishAll(t, s, all[:20])
	// Split at partition 2's start key: children hold {0,1} and {2,3}.
	half := new(big.Int).Lsh(big.NewInt(1), 127).String()
	if _, err := c.SplitShard(ctx, &awskinesis.SplitShardInput{StreamName: &name,
		ShardToSplit: aws.String("shardId-000000000000"), NewStartingHashKey: &half}); err != nil {
		t.Fatalf("split: %v", err)
	}
	waitActive(t, c, name)
	publishAll(t, s, all[20:40])
	if _, err := c.MergeShards(ctx, &awskinesis.MergeShardsInput{StreamName: &name,
		ShardToMerge: aws.String("shardId-000000000001"), AdjacentShardToMerge: aws.String("shardId-000000000002")}); err != nil {
		t.Fatalf("merge: %v", err)
	}
	waitActive(t, c, name)
	publishAll(t, s, all[40:])
	shards := listShards(t, c, name)
	if len(shards) != 4 {
		t.Fatalf("%d shards after split and merge, want 4: %v", len(shards), shards)
	}

	got := streamtest.Consume(t, s, stream.ConsumeOptions{FromStart: true}, nil, streamtest.AtLeast(60))
	checkOnceInOrder(t, got, 0, 60)
	perShard := map[string]int{}
	for _, d := range got {
		perShard[d.Partition]++
	}
	// 20 records before the split, 10 in each child, 20 after the merge.
	want := map[string]int{"shardId-000000000000": 20, "shardId-000000000001": 10, "shardId-000000000002": 10, "shardId-000000000003": 20}
	if fmt.Sprint(perShard) != fmt.Sprint(want) {
		t.Errorf("records per shard %v, want %v", perShard, want)
	}

	// Partition 0 lives in shards 0, 1 and 3; shard 2 (partitions 2 and 3
	// after the split) is a parent of 3 that the consumer need not read.
	o := stream.ConsumeOptions{FromStart: true, Partitions: []int{0}}
	got = streamtest.Consume(t, s, o, nil, streamtest.AtLeast(15))
	var idx []int
	for _, d := range got {
		var i int
		fmt.Sscanf(string(d.Data), "payload-%d", &i)
		if i%4 != 0 || d.Partition == "shardId-000000000002" {
			t.Errorf("consumer of partition 0 got payload-%d from %s", i, d.Partition)
		}
		idx = append(idx, i)
	}
	for k := 1; k < len(idx); k++ {
		if idx[k] <= idx[k-1] {
			t.Fatalf("partition 0 out of order: %v", idx)
		}
	}
}

func publishAll(t *testing.T, s stream.Stream, rs []stream.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Publish(ctx, rs...); err != nil {
		t.Fatal(err)
	}
}

func listShards(t *testing.T, c *awskinesis.Client, name string) []string {
	t.Helper()
	out, err := c.ListShards(context.Background(), &awskinesis.ListShardsInput{StreamName: &name})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, sh := range out.Shards {
		ids = append(ids, aws.ToString(sh.ShardId))
	}
	return ids
}

// waitActive waits until the stream is ACTIVE again after resharding.
func waitActive(t *testing.T, c *awskinesis.Client, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		out, err := c.DescribeStreamSummary(ctx, &awskinesis.DescribeStreamSummaryInput{StreamName: &name})
		if err != nil {
			t.Fatal(err)
		}
		if out.StreamDescriptionSummary.StreamStatus == types.StreamStatusActive {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("stream did not become active")
		case <-tick.C:
		}
	}
}

// TestForeignRecords puts a record of another producer before les'
// records: it is skipped and counted, and the consumer goes on.
func TestForeignRecords(t *testing.T) {
	endpoint := kinesistest.Start(t)
	kinesistest.AWSEnv(t)
	reg := selfmetric.New()
	s := open(t, endpoint, 2, reg)
	defer s.Close()
	kinesistest.Put(t, client(t, endpoint), streamName(t), []byte("not les"), []byte("nor this"))
	publishAll(t, s, recs(8))
	got := streamtest.Consume(t, s, stream.ConsumeOptions{FromStart: true}, nil, streamtest.AtLeast(8))
	checkOnceInOrder(t, got, 0, 8)
	wantMetrics(t, reg, `les_stream_foreign_records_total{backend="kinesis"} 2`)
}

// warnSignal is a slog handler that closes ch at the first WARN record.
type warnSignal struct {
	once *sync.Once
	ch   chan struct{}
}

func (w warnSignal) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w warnSignal) Handle(context.Context, slog.Record) error {
	w.once.Do(func() { close(w.ch) })
	return nil
}
func (w warnSignal) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w warnSignal) WithGroup(string) slog.Handler      { return w }

// TestUnreachable opens a stream on an endpoint where nothing listens:
// Open succeeds, Publish fails by its deadline with an error other than
// ErrTooLarge, and Consume stops on cancel while it retries.
func TestUnreachable(t *testing.T) {
	kinesistest.AWSEnv(t)
	warned := warnSignal{once: new(sync.Once), ch: make(chan struct{})}
	s, err := kinesis.Open(context.Background(), kinesis.Config{Stream: "nowhere", Endpoint: "http://127.0.0.1:1"},
		streamtest.Partitions, kinesis.Deps{Log: slog.New(warned)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err = s.Publish(ctx, recs(4)...)
	if err == nil || errors.Is(err, stream.ErrTooLarge) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish: %v, want a deadline error", err)
	}
	if ctx.Err() == nil {
		t.Fatalf("Publish gave up before its deadline: %v", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.Consume(ctx, stream.ConsumeOptions{FromStart: true}, func(context.Context, []stream.Delivery) error { return nil })
	}()
	select {
	case <-warned.ch: // ListShards failed: it retries now
	case err := <-done:
		t.Fatalf("Consume returned %v before cancel", err)
	case <-time.After(30 * time.Second):
		t.Fatal("Consume logged no failure in 30s")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Consume: %v, want nil after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Consume did not return within 10s of cancel")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  kinesis.Config
		err  string
	}{
		{"defaults", kinesis.Config{Stream: "s"}, ""},
		{"no stream", kinesis.Config{}, "kinesis.stream: a stream name is required"},
		{"fast poll", kinesis.Config{Stream: "s", PollInterval: 100 * time.Millisecond}, "kinesis.poll_interval"},
		{"too many records", kinesis.Config{Stream: "s", MaxRecordsPerCall: 501}, "kinesis.max_records_per_call"},
		{"negative shards", kinesis.Config{Stream: "s", CreateShards: -1}, "kinesis.create_shards"},
		{"negative timeout", kinesis.Config{Stream: "s", PutTimeout: -time.Second}, "kinesis.put_timeout"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tt.cfg.PollInterval != time.Second || tt.cfg.MaxRecordsPerCall != 500 || tt.cfg.PutTimeout != 10*time.Second {
					t.Errorf("defaults not filled: %+v", tt.cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.err)
			}
		})
	}
}

// TestExample checks that example.yaml parses strictly and validates.
func TestExample(t *testing.T) {
	raw, err := os.ReadFile("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Stream struct {
			Kind       string         `yaml:"kind"`
			Partitions int            `yaml:"partitions"`
			Kinesis    kinesis.Config `yaml:"kinesis"`
		} `yaml:"stream"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc.Stream.Kind != "kinesis" || doc.Stream.Partitions < 1 {
		t.Errorf("example stream block: %+v", doc.Stream)
	}
	if err := doc.Stream.Kinesis.Validate(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkPublish publishes 4 records (one per logical partition, so one
// PutRecords call) per op, to kinesalite and to an in-process endpoint
// that reads the request and answers success. kinesalite is not AWS: its
// figures include kinesalite's own work and say nothing of Kinesis
// throughput; the in-process figures are les' and the SDK's client cost
// alone (JSON and base64 encoding, SigV4 signing, HTTP).
func BenchmarkPublish(b *testing.B) {
	kinesistest.AWSEnv(b)
	endpoints := map[string]string{"kinesalite": kinesistest.Start(b), "discard": discardEndpoint(b)}
	for _, target := range []string{"kinesalite", "discard"} {
		for _, size := range []int{64 << 10, 256 << 10} {
			b.Run(fmt.Sprintf("%s/record=%dKiB", target, size>>10), func(b *testing.B) {
				var s *kinesis.Stream
				if target == "kinesalite" {
					s = open(b, endpoints[target], 4, nil)
				} else {
					var err error
					s, err = kinesis.Open(context.Background(), kinesis.Config{Stream: "discard", Endpoint: endpoints[target]},
						streamtest.Partitions, kinesis.Deps{Log: quiet()})
					if err != nil {
						b.Fatal(err)
					}
				}
				defer s.Close()
				data := make([]byte, size)
				for i := range data {
					data[i] = byte(i*7 + i>>9)
				}
				var rs []stream.Record
				for p := range streamtest.Partitions {
					rs = append(rs, stream.Record{Origin: stream.OriginIngest, Signal: wire.SignalMetrics, Partition: p, ID: "b", Data: data})
				}
				ctx := context.Background()
				b.SetBytes(int64(size * len(rs)))
				b.ReportAllocs()
				for b.Loop() {
					if err := s.Publish(ctx, rs...); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// discardEndpoint serves PutRecords calls of 4 records: it reads the
// request and answers that all were stored.
func discardEndpoint(b *testing.B) string {
	const ok = `{"FailedRecordCount":0,"Records":[` +
		`{"SequenceNumber":"1","ShardId":"shardId-000000000000"},{"SequenceNumber":"2","ShardId":"shardId-000000000000"},` +
		`{"SequenceNumber":"3","ShardId":"shardId-000000000000"},{"SequenceNumber":"4","ShardId":"shardId-000000000000"}]}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		_, _ = io.WriteString(w, ok)
	}))
	b.Cleanup(srv.Close)
	return srv.URL
}
