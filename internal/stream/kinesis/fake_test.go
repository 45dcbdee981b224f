package kinesis_test

import (
	"context"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// fakeAPI is one Kinesis stream in memory, with fault hooks. Iterators
// are "<shard index>:<record index>"; sequence numbers count up from
// 1000 over the whole stream.
type fakeAPI struct {
	mu     sync.Mutex
	shards []*fakeShard
	seq    int

	// putFault returns an error code for entry i of PutRecords call n
	// (from 1), or "" to store it.
	putFault func(call, i int, e types.PutRecordsRequestEntry) string
	// getFault returns an error for GetRecords call n (from 1), or nil.
	getFault func(call int) error

	putCalls [][]types.PutRecordsRequestEntry // every entry of every call
	getCalls int
	iters    []string // GetShardIterator requests: "TYPE" or "TYPE:seq"
}

type fakeShard struct {
	id      string
	lo, hi  *big.Int
	recs    []types.Record
	trimmed int // records below this index are gone
}

// newFake returns a stream of n shards splitting the hash-key space evenly.
func newFake(n int) *fakeAPI {
	f := &fakeAPI{seq: 1000}
	space := new(big.Int).Lsh(big.NewInt(1), 128)
	for i := range n {
		lo := new(big.Int).Div(new(big.Int).Mul(space, big.NewInt(int64(i))), big.NewInt(int64(n)))
		hi := new(big.Int).Div(new(big.Int).Mul(space, big.NewInt(int64(i+1))), big.NewInt(int64(n)))
		hi.Sub(hi, big.NewInt(1))
		f.shards = append(f.shards, &fakeShard{id: fmt.Sprintf("shardId-%012d", i), lo: lo, hi: hi})
	}
	return f
}

// trim drops the first n records of shard i, as retention would.
func (f *fakeAPI) trim(i, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shards[i].trimmed = n
}

// stored returns the partition keys of shard i's records, in order, with
// their data.
func (f *fakeAPI) stored(i int) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.shards[i].recs {
		out = append(out, aws.ToString(r.PartitionKey)+"="+string(r.Data))
	}
	return out
}

func (f *fakeAPI) PutRecords(_ context.Context, in *awskinesis.PutRecordsInput, _ ...func(*awskinesis.Options)) (*awskinesis.PutRecordsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.putCalls = append(f.putCalls, append([]types.PutRecordsRequestEntry(nil), in.Records...))
	call := len(f.putCalls)
	out := &awskinesis.PutRecordsOutput{FailedRecordCount: aws.Int32(0)}
	for i, e := range in.Records {
		if f.putFault != nil {
			if code := f.putFault(call, i, e); code != "" {
				out.Records = append(out.Records, types.PutRecordsResultEntry{ErrorCode: aws.String(code), ErrorMessage: aws.String("injected")})
				*out.FailedRecordCount++
				continue
			}
		}
		k, _ := new(big.Int).SetString(aws.ToString(e.ExplicitHashKey), 10)
		for _, sh := range f.shards {
			if k.Cmp(sh.lo) >= 0 && k.Cmp(sh.hi) <= 0 {
				f.seq++
				seq := strconv.Itoa(f.seq)
				sh.recs = append(sh.recs, types.Record{Data: append([]byte(nil), e.Data...), PartitionKey: e.PartitionKey,
					SequenceNumber: aws.String(seq), ApproximateArrivalTimestamp: aws.Time(time.Now())})
				out.Records = append(out.Records, types.PutRecordsResultEntry{ShardId: aws.String(sh.id), SequenceNumber: aws.String(seq)})
				break
			}
		}
	}
	return out, nil
}

func (f *fakeAPI) ListShards(context.Context, *awskinesis.ListShardsInput, ...func(*awskinesis.Options)) (*awskinesis.ListShardsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := &awskinesis.ListShardsOutput{}
	for _, sh := range f.shards {
		out.Shards = append(out.Shards, types.Shard{ShardId: aws.String(sh.id),
			HashKeyRange:        &types.HashKeyRange{StartingHashKey: aws.String(sh.lo.String()), EndingHashKey: aws.String(sh.hi.String())},
			SequenceNumberRange: &types.SequenceNumberRange{StartingSequenceNumber: aws.String("1000")}})
	}
	return out, nil
}

func (f *fakeAPI) GetShardIterator(_ context.Context, in *awskinesis.GetShardIteratorInput, _ ...func(*awskinesis.Options)) (*awskinesis.GetShardIteratorOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	req := string(in.ShardIteratorType)
	if in.StartingSequenceNumber != nil {
		req += ":" + *in.StartingSequenceNumber
	}
	f.iters = append(f.iters, req)
	si := -1
	for i, sh := range f.shards {
		if sh.id == aws.ToString(in.ShardId) {
			si = i
		}
	}
	if si < 0 {
		return nil, &types.ResourceNotFoundException{Message: aws.String("no such shard")}
	}
	sh := f.shards[si]
	pos := sh.trimmed
	switch in.ShardIteratorType {
	case types.ShardIteratorTypeLatest:
		pos = len(sh.recs)
	case types.ShardIteratorTypeAfterSequenceNumber:
		pos = -1
		for i := sh.trimmed; i < len(sh.recs); i++ {
			if aws.ToString(sh.recs[i].SequenceNumber) == aws.ToString(in.StartingSequenceNumber) {
				pos = i + 1
			}
		}
		if pos < 0 {
			return nil, &types.InvalidArgumentException{Message: aws.String("StartingSequenceNumber " + aws.ToString(in.StartingSequenceNumber) + " is not in the shard")}
		}
	}
	return &awskinesis.GetShardIteratorOutput{ShardIterator: aws.String(fmt.Sprintf("%d:%d", si, pos))}, nil
}

func (f *fakeAPI) GetRecords(_ context.Context, in *awskinesis.GetRecordsInput, _ ...func(*awskinesis.Options)) (*awskinesis.GetRecordsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.getCalls++
	if f.getFault != nil {
		if err := f.getFault(f.getCalls); err != nil {
			return nil, err
		}
	}
	a, b, _ := strings.Cut(aws.ToString(in.ShardIterator), ":")
	si, _ := strconv.Atoi(a)
	pos, _ := strconv.Atoi(b)
	sh := f.shards[si]
	pos = max(pos, sh.trimmed)
	end := min(pos+3, len(sh.recs)) // a few records per call: several calls per test
	out := &awskinesis.GetRecordsOutput{MillisBehindLatest: aws.Int64(int64(len(sh.recs) - end)),
		NextShardIterator: aws.String(fmt.Sprintf("%d:%d", si, end))}
	out.Records = append(out.Records, sh.recs[pos:end]...)
	return out, nil
}

func (f *fakeAPI) DescribeStreamSummary(context.Context, *awskinesis.DescribeStreamSummaryInput, ...func(*awskinesis.Options)) (*awskinesis.DescribeStreamSummaryOutput, error) {
	return &awskinesis.DescribeStreamSummaryOutput{StreamDescriptionSummary: &types.StreamDescriptionSummary{StreamStatus: types.StreamStatusActive}}, nil
}

func (f *fakeAPI) CreateStream(context.Context, *awskinesis.CreateStreamInput, ...func(*awskinesis.Options)) (*awskinesis.CreateStreamOutput, error) {
	return nil, &types.ResourceInUseException{Message: aws.String("exists")}
}
