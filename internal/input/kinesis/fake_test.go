package kinesis_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/les-streams/les/internal/input/kinesis"
	"github.com/les-streams/les/internal/selfmetric"
)

// fakeAPI is one closed shard of records in memory whose GetRecords fails
// with a throttling error and an expired iterator once each. Iterators are
// "<position>" strings: the index of the next record.
type fakeAPI struct {
	mu      sync.Mutex
	records [][]byte
	calls   int
	iters   []string // GetShardIterator requests, "TYPE:seq"
}

func (f *fakeAPI) ListShards(context.Context, *awskinesis.ListShardsInput, ...func(*awskinesis.Options)) (*awskinesis.ListShardsOutput, error) {
	return &awskinesis.ListShardsOutput{Shards: []types.Shard{{ShardId: aws.String("shardId-0")}}}, nil
}

func (f *fakeAPI) GetShardIterator(_ context.Context, in *awskinesis.GetShardIteratorInput, _ ...func(*awskinesis.Options)) (*awskinesis.GetShardIteratorOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	seq := aws.ToString(in.StartingSequenceNumber)
	f.iters = append(f.iters, string(in.ShardIteratorType)+":"+seq)
	pos := 0
	if in.ShardIteratorType == types.ShardIteratorTypeAfterSequenceNumber {
		n, _ := strconv.Atoi(seq)
		pos = n + 1
	}
	return &awskinesis.GetShardIteratorOutput{ShardIterator: aws.String(strconv.Itoa(pos))}, nil
}

func (f *fakeAPI) GetRecords(_ context.Context, in *awskinesis.GetRecordsInput, _ ...func(*awskinesis.Options)) (*awskinesis.GetRecordsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	switch f.calls {
	case 2:
		return nil, &types.ProvisionedThroughputExceededException{Message: aws.String("slow down")}
	case 4:
		return nil, &types.ExpiredIteratorException{Message: aws.String("expired")}
	}
	pos, _ := strconv.Atoi(aws.ToString(in.ShardIterator))
	end := min(pos+2, len(f.records))
	out := &awskinesis.GetRecordsOutput{MillisBehindLatest: aws.Int64(int64(1000 * (len(f.records) - end)))}
	for i := pos; i < end; i++ {
		out.Records = append(out.Records, types.Record{Data: f.records[i], SequenceNumber: aws.String(strconv.Itoa(i))})
	}
	if end < len(f.records) {
		out.NextShardIterator = aws.String(strconv.Itoa(end))
	} // else: the shard is closed and read to its end
	return out, nil
}

// TestPollerRetries checks throttling, an expired iterator (taken again
// after the checkpoint) and a closed shard, with the fake clock of synctest.
func TestPollerRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		data, ids := payloads("f", 5)
		data = append(data, []byte("not a payload"))
		f := &fakeAPI{records: data}
		c := newCollector(0)
		ckpt := filepath.Join(t.TempDir(), "k.json")
		reg := selfmetric.New()
		newPoller := func() *kinesis.Poller {
			p, err := kinesis.New(kinesis.Config{Stream: "s"}, kinesis.Deps{
				Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: reg,
				Publish: c.publish, CheckpointPath: ckpt, Client: f,
			})
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- newPoller().Run(ctx) }()
		for c.count() < len(ids) {
			synctest.Wait()
			if c.count() < len(ids) {
				sleepFake(100)
			}
		}
		sleepFake(5000)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		checkExactlyOnce(t, c, ids)
		if got, want := strings.Join(f.iters, " "), "TRIM_HORIZON: AFTER_SEQUENCE_NUMBER:3"; got != want {
			t.Errorf("iterator requests %q, want %q", got, want)
		}
		var b strings.Builder
		reg.WritePrometheus(&b)
		for _, want := range []string{
			`les_kinesis_errors_total{stream="s",reason="throttled"} 1`,
			`les_kinesis_errors_total{stream="s",reason="expired_iterator"} 1`,
			`les_kinesis_rejected_total{stream="s",reason="bad_base64"} 1`,
			`les_kinesis_records_total{stream="s"} 6`,
		} {
			if !strings.Contains(b.String(), want) {
				t.Errorf("metrics lack %s:\n%s", want, grep(b.String(), "les_kinesis"))
			}
		}

		// The shard is closed in the checkpoint: a new poller reads nothing.
		calls := f.calls
		ctx, cancel = context.WithCancel(t.Context())
		go func() { done <- newPoller().Run(ctx) }()
		sleepFake(5000)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if f.calls != calls || len(f.iters) != 2 {
			t.Errorf("a closed shard was read again: %d GetRecords, iterators %v", f.calls-calls, f.iters)
		}
	})
}

// sleepFake advances synctest's fake clock by ms milliseconds.
func sleepFake(ms int) { time.Sleep(time.Duration(ms) * time.Millisecond) }
