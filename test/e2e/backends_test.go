package e2e

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/les-streams/les/internal/input/kinesis/kinesistest"
	"github.com/les-streams/les/internal/stream"
	"github.com/les-streams/les/internal/stream/kafka"
	"github.com/les-streams/les/internal/stream/kinesis"
	"github.com/les-streams/les/internal/stream/natsjs"
	"github.com/les-streams/les/internal/wire"
)

// streamBackend is a stream les runs on in a test: the embedded stream
// inside les, a Kafka cluster (kfake) or a Kinesis server (kinesalite).
// The Kafka and Kinesis servers run in or under the test process, so they
// outlive a les killed with SIGKILL. Configure points a Les at it; the
// test reads the stream back with the backend package (readStream).
type streamBackend struct {
	// Kind is the stream.kind les runs with.
	Kind string
	// Partitions is stream.partitions (0: les' default).
	Partitions int
	// yaml is the stream: block replacing NewLes' embedded one ("": keep it).
	yaml string
	// open opens the stream from the test process; the caller closes it.
	open func(ctx context.Context, l *Les) (stream.Stream, error)
	// end is where the records of origin and sigs end now.
	end func(ctx context.Context, l *Les, origin string, sigs []wire.Signal) (streamEnd, error)
	// filters: a consumer may filter by origin and signals and still reach
	// end (whose positions are those of the filtered records only).
	filters bool
	// diagnose, when set, logs what the backend knows of the durable
	// consumer named durable (for a failing test).
	diagnose func(ctx context.Context, t *testing.T, durable string)
}

// streamEnd is the end of a stream at some moment: everything up to it was
// stored then.
type streamEnd struct {
	// last is the newest position of every physical partition holding
	// records (Kafka "<origin>.<signal>/<partition>", Kinesis shard ids).
	last map[string]stream.Position
	// global, when set, is one position for all partitions: JetStream
	// positions are the stream sequence, shared by every subject, and an
	// ordered consumer delivers in that order.
	global stream.Position
}

func (e streamEnd) empty() bool { return e.global == "" && len(e.last) == 0 }

// includes reports whether d was on the stream at the end.
func (e streamEnd) includes(d *stream.Delivery) bool {
	if e.global != "" {
		return stream.ComparePositions(d.Pos, e.global) <= 0
	}
	last, ok := e.last[d.Partition]
	return ok && stream.ComparePositions(d.Pos, last) <= 0
}

// reached reports whether a reader that got up to seen (the newest
// position delivered per physical partition) has read everything up to e.
func (e streamEnd) reached(seen map[string]stream.Position) bool {
	if e.global != "" {
		for _, p := range seen {
			if stream.ComparePositions(p, e.global) >= 0 {
				return true
			}
		}
		return false
	}
	for part, last := range e.last {
		if stream.ComparePositions(seen[part], last) < 0 {
			return false
		}
	}
	return true
}

func (e streamEnd) String() string {
	if e.global != "" {
		return "sequence " + string(e.global)
	}
	return fmt.Sprint(e.last)
}

// embeddedLine is NewLes' stream line.
var embeddedLine = regexp.MustCompile(`(?m)^stream: \{ embedded: \{ listen: [^}]*\} \}\n`)

// Configure makes l run on b (l.Backend) by replacing the default
// stream line of l.Config; call it before Start.
func (b *streamBackend) Configure(t *testing.T, l *Les) {
	t.Helper()
	l.Backend = b
	if b.yaml == "" {
		return
	}
	if !embeddedLine.MatchString(l.Config) {
		t.Fatalf("no embedded stream line to replace in:\n%s", l.Config)
	}
	l.Config = embeddedLine.ReplaceAllLiteralString(l.Config, b.yaml)
}

// backendOf is l's backend: l.Backend, or the embedded stream.
func backendOf(l *Les) *streamBackend {
	if l.Backend != nil {
		return l.Backend
	}
	return embeddedBackend()
}

// embeddedBackend is the stream inside les (NewLes' default), read as a
// NATS JetStream client.
func embeddedBackend() *streamBackend {
	return &streamBackend{
		Kind: "embedded",
		open: func(ctx context.Context, l *Les) (stream.Stream, error) {
			return natsjs.Open(ctx, natsjs.Config{URL: "nats://" + l.Addr("nats"), Token: l.StreamToken()}, 1, natsjs.Deps{MustExist: true})
		},
		end: func(ctx context.Context, l *Les, _ string, _ []wire.Signal) (streamEnd, error) {
			last, err := lastSeq(ctx, "nats://"+l.Addr("nats"), l.StreamToken())
			if err != nil || last == 0 {
				return streamEnd{}, err
			}
			return streamEnd{global: stream.Position(strconv.FormatUint(last, 10))}, nil
		},
	}
}

// kafkaPartitions is stream.partitions on the Kafka and Kinesis backends.
const kafkaPartitions = 4

// The test's Kafka cluster caps the session and rebalance timeouts of
// every consumer group member at these (see kafkaBackend). The rebalance
// timeout stays below the session timeout, as franz-go's defaults (60 s
// and 45 s) do not: kfake expires a member whose join waits longer than
// its session timeout without answering the join, and the client then
// waits for its own request timeout (rebalance timeout + 10 s).
const (
	kafkaSessionTimeout   = 10 * time.Second
	kafkaRebalanceTimeout = 5 * time.Second
)

// kafkaBackend starts a one-broker kfake cluster in the test process on a
// fixed loopback port (les connects over TCP and reconnects after a
// restart to the same address); it stops when t ends. les creates the
// topics (les.<origin>.<signal>) with 4 partitions.
//
// The cluster caps the session and rebalance timeouts group members ask
// for (45 s and 60 s, franz-go's defaults, which les keeps) at
// kafkaSessionTimeout and kafkaRebalanceTimeout. A les killed with SIGKILL stays in its sinks'
// consumer groups as a member that never answers, and a rebalance waits
// for such members until they time out; a member killed while its join
// was pending is even carried into the next generation and only dropped
// when it fails to sync. With the default timeouts three quick kills
// stalled the file sink's group for 3m40s on kfake (each dead member
// costs a session or rebalance timeout, and each removal restarts the
// rebalance), far beyond the test's budget. Shorter timeouts keep every
// part of the protocol (joins, revocations, commits under kills), only
// faster. opts are further cluster options.
func kafkaBackend(t *testing.T, opts ...kfake.Opt) *streamBackend {
	t.Helper()
	port := freePort(t)
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.Ports(port)}, opts...)...)
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	c.ControlKey(int16(kmsg.JoinGroup), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if j, ok := req.(*kmsg.JoinGroupRequest); ok {
			j.SessionTimeoutMillis = min(j.SessionTimeoutMillis, int32(kafkaSessionTimeout/time.Millisecond))
			j.RebalanceTimeoutMillis = min(j.RebalanceTimeoutMillis, int32(kafkaRebalanceTimeout/time.Millisecond))
		}
		return nil, nil, false // not handled: the cluster processes the (capped) request
	})
	addr := c.ListenAddrs()[0]
	cfg := func() kafka.Config { return kafka.Config{Brokers: []string{addr}} }
	return &streamBackend{
		Kind: "kafka", Partitions: kafkaPartitions, filters: true,
		yaml: fmt.Sprintf("stream:\n  kind: kafka\n  partitions: %d\n  kafka: { brokers: [%q] }\n", kafkaPartitions, addr),
		open: func(ctx context.Context, _ *Les) (stream.Stream, error) {
			return kafka.Open(ctx, cfg(), kafkaPartitions, kafka.Deps{})
		},
		end: func(ctx context.Context, _ *Les, origin string, sigs []wire.Signal) (streamEnd, error) {
			return kafkaEnd(ctx, addr, origin, sigs)
		},
		diagnose: func(ctx context.Context, t *testing.T, durable string) { kafkaGroupLag(ctx, t, addr, durable) },
	}
}

// kafkaGroupLag logs the state, members and per-partition lag of the
// consumer group of durable.
func kafkaGroupLag(ctx context.Context, t *testing.T, addr, durable string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Logf("kafka group %s: %v", durable, err)
		return
	}
	adm := kadm.NewClient(cl)
	defer adm.Close()
	group := kafka.DefaultTopicPrefix + "." + durable
	lags, err := adm.Lag(ctx, group)
	if err != nil {
		t.Logf("kafka group %s: %v", group, err)
		return
	}
	for _, g := range lags {
		t.Logf("kafka group %s: state %s, %d members, err %v", g.Group, g.State, len(g.Members), g.Error())
		for _, m := range g.Members {
			t.Logf("  member %s (client %s %s)", m.MemberID, m.ClientID, m.ClientHost)
		}
		for _, l := range g.Lag.Sorted() {
			owner := "-"
			if l.Member != nil {
				owner = l.Member.MemberID
			}
			t.Logf("  %s/%d: committed %d, end %d, lag %d, owner %s, err %v", l.Topic, l.Partition, l.Commit.At, l.End.Offset, l.Lag, owner, l.Err)
		}
	}
}

// kafkaEnd asks the broker for the high watermark of every partition of
// the topics of origin × sigs: the newest offset is hwm−1. Missing topics
// and empty partitions hold nothing.
func kafkaEnd(ctx context.Context, addr, origin string, sigs []wire.Signal) (streamEnd, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return streamEnd{}, err
	}
	adm := kadm.NewClient(cl)
	defer adm.Close()
	var topics []string
	label := map[string]string{}
	for _, sig := range sigs {
		topic := kafka.DefaultTopicPrefix + "." + origin + "." + sig.String()
		topics = append(topics, topic)
		label[topic] = origin + "." + sig.String() // the backend's Delivery.Partition prefix
	}
	offs, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return streamEnd{}, fmt.Errorf("list end offsets: %w", err)
	}
	e := streamEnd{last: map[string]stream.Position{}}
	var errs []error
	offs.Each(func(o kadm.ListedOffset) {
		switch {
		case errors.Is(o.Err, kerr.UnknownTopicOrPartition):
		case o.Err != nil:
			errs = append(errs, fmt.Errorf("%s/%d: %w", o.Topic, o.Partition, o.Err))
		case o.Offset > 0:
			e.last[label[o.Topic]+"/"+strconv.Itoa(int(o.Partition))] = stream.Position(strconv.FormatInt(o.Offset-1, 10))
		}
	})
	return e, errors.Join(errs...)
}

// kinesisStream is the Kinesis stream les writes in the tests.
const kinesisStream = "les-e2e"

// kinesisBackend starts kinesalite (see startKinesalite), creates a 2-shard
// stream on it and gives the process (and so every les it starts) dummy
// AWS credentials and a region from the environment, as the SDK's default
// chain reads them. les uses 4 logical partitions: two per shard.
func kinesisBackend(t *testing.T) *streamBackend {
	t.Helper()
	endpoint := kinesistest.Start(t)
	kinesistest.AWSEnv(t)
	client := kinesistest.Client(endpoint)
	kinesistest.CreateStream(t, client, kinesisStream, 2)
	cfg := func() kinesis.Config {
		return kinesis.Config{Stream: kinesisStream, Region: kinesistest.Region, Endpoint: endpoint,
			PollInterval: kinesis.MinPollInterval}
	}
	return &streamBackend{
		Kind: "kinesis", Partitions: kafkaPartitions,
		yaml: fmt.Sprintf("stream:\n  kind: kinesis\n  partitions: %d\n  kinesis: { stream: %s, endpoint: %q, region: %s, poll_interval: %s }\n",
			kafkaPartitions, kinesisStream, endpoint, kinesistest.Region, kinesis.MinPollInterval),
		open: func(ctx context.Context, _ *Les) (stream.Stream, error) {
			return kinesis.Open(ctx, cfg(), kafkaPartitions, kinesis.Deps{API: client})
		},
		end: func(ctx context.Context, _ *Les, _ string, _ []wire.Signal) (streamEnd, error) {
			return kinesisEnd(ctx, client, kinesisStream)
		},
	}
}

// kinesisEnd reads every shard of name from TRIM_HORIZON with the SDK until
// a GetRecords page comes back empty with MillisBehindLatest 0 (or the
// shard is closed and read to its end) and returns the last sequence number
// of each shard that holds records. Kinesis has no cheaper end marker: an
// empty page alone does not mean the end (Kinesis may return empty pages
// while a reader is behind), MillisBehindLatest 0 does.
func kinesisEnd(ctx context.Context, c *awskinesis.Client, name string) (streamEnd, error) {
	e := streamEnd{last: map[string]stream.Position{}}
	var shards []types.Shard
	in := &awskinesis.ListShardsInput{StreamName: aws.String(name)}
	for {
		out, err := c.ListShards(ctx, in)
		if err != nil {
			return e, fmt.Errorf("list shards: %w", err)
		}
		shards = append(shards, out.Shards...)
		if out.NextToken == nil {
			break
		}
		in = &awskinesis.ListShardsInput{NextToken: out.NextToken}
	}
	for _, sh := range shards {
		it, err := c.GetShardIterator(ctx, &awskinesis.GetShardIteratorInput{StreamName: aws.String(name),
			ShardId: sh.ShardId, ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
		if err != nil {
			return e, fmt.Errorf("shard %s: %w", aws.ToString(sh.ShardId), err)
		}
		iter := it.ShardIterator
		for iter != nil {
			out, err := c.GetRecords(ctx, &awskinesis.GetRecordsInput{ShardIterator: iter})
			if err != nil {
				return e, fmt.Errorf("shard %s: %w", aws.ToString(sh.ShardId), err)
			}
			if n := len(out.Records); n > 0 {
				e.last[aws.ToString(sh.ShardId)] = stream.Position(aws.ToString(out.Records[n-1].SequenceNumber))
			} else if aws.ToInt64(out.MillisBehindLatest) == 0 {
				break
			}
			iter = out.NextShardIterator
		}
	}
	return e, nil
}

// readTimeout bounds one readStream.
const readTimeout = 60 * time.Second
