package kinesis

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
)

// LiteConfig configures a Lite client. Empty fields come from the
// environment, as Lambda gives it to extensions.
type LiteConfig struct {
	// Region; empty: AWS_REGION, then AWS_DEFAULT_REGION.
	Region string
	// Endpoint; empty: AWS_ENDPOINT_URL_KINESIS, AWS_ENDPOINT_URL, then
	// https://kinesis.<region>.amazonaws.com (.amazonaws.com.cn in cn-*).
	Endpoint string
	// Timeout bounds one call when the caller's ctx has no earlier
	// deadline (default 10s).
	Timeout time.Duration
	// Credentials returns the keys to sign with; nil reads
	// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN at
	// every call.
	Credentials func() (aws.Credentials, error)
	// Transport replaces the HTTP transport (tests).
	Transport http.RoundTripper
}

// Lite is an API that implements PutRecords only: one JSON request
// (Kinesis_20131202.PutRecords) signed with Signature Version 4 by the
// SDK's aws/signer/v4, with static credentials from the environment. The
// Lambda extension uses it because the SDK's Kinesis client and its
// configuration chain (SSO, STS, IMDS, shared files) triple the binary
// (ADR 0005); in Lambda the function's role arrives as environment
// variables, so nothing else is needed. The other API methods fail with
// an error wrapping errors.ErrUnsupported. Lite is safe for concurrent use.
type Lite struct {
	region   string
	endpoint string
	timeout  time.Duration
	creds    func() (aws.Credentials, error)
	client   *http.Client
	tr       *http.Transport // nil when LiteConfig.Transport was given
	signer   *v4.Signer
}

// NewLite validates cfg against the environment; it does no I/O.
func NewLite(cfg LiteConfig) (*Lite, error) {
	l := &Lite{region: cfg.Region, endpoint: cfg.Endpoint, timeout: cfg.Timeout, creds: cfg.Credentials, signer: v4.NewSigner()}
	if l.region == "" {
		l.region = firstEnv("AWS_REGION", "AWS_DEFAULT_REGION")
	}
	if l.region == "" {
		return nil, errors.New("kinesis: no region: set AWS_REGION (Lambda sets it) or stream.kinesis.region")
	}
	if l.endpoint == "" {
		l.endpoint = firstEnv("AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL")
	}
	if l.endpoint == "" {
		suffix := "amazonaws.com"
		if strings.HasPrefix(l.region, "cn-") {
			suffix = "amazonaws.com.cn"
		}
		l.endpoint = "https://kinesis." + l.region + "." + suffix
	}
	if !strings.HasPrefix(l.endpoint, "https://") && !strings.HasPrefix(l.endpoint, "http://") {
		return nil, fmt.Errorf("kinesis: endpoint %q is not an http(s) URL", l.endpoint)
	}
	if l.timeout <= 0 {
		l.timeout = 10 * time.Second
	}
	if l.creds == nil {
		l.creds = envCredentials
	}
	rt := cfg.Transport
	if rt == nil {
		// Short connection timeouts: after a thaw a pooled connection
		// may be dead, and a dial must fail fast so the batch spools.
		l.tr = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   3 * time.Second,
			ResponseHeaderTimeout: 0, // the call's ctx bounds it
			IdleConnTimeout:       60 * time.Second,
			MaxIdleConnsPerHost:   4,
			ForceAttemptHTTP2:     true,
		}
		rt = l.tr
	}
	l.client = &http.Client{Transport: rt}
	return l, nil
}

// Transport is the transport NewLite built (nil when one was given), so
// its owner can close idle connections.
func (l *Lite) Transport() *http.Transport { return l.tr }

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

func envCredentials() (aws.Credentials, error) {
	c := aws.Credentials{
		AccessKeyID:     os.Getenv("AWS_ACCESS_KEY_ID"),
		SecretAccessKey: os.Getenv("AWS_SECRET_ACCESS_KEY"),
		SessionToken:    os.Getenv("AWS_SESSION_TOKEN"),
		Source:          "environment",
	}
	if c.AccessKeyID == "" || c.SecretAccessKey == "" {
		return c, errors.New("kinesis: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set (Lambda sets them from the function's role)")
	}
	return c, nil
}

// The JSON shapes of PutRecords ([]byte marshals as base64, as Kinesis
// wants Data).
type litePutRequest struct {
	StreamName string                `json:"StreamName,omitempty"`
	StreamARN  string                `json:"StreamARN,omitempty"`
	Records    []litePutRequestEntry `json:"Records"`
}

type litePutRequestEntry struct {
	Data            []byte `json:"Data"`
	PartitionKey    string `json:"PartitionKey"`
	ExplicitHashKey string `json:"ExplicitHashKey,omitempty"`
}

type litePutResponse struct {
	FailedRecordCount int `json:"FailedRecordCount"`
	Records           []struct {
		SequenceNumber string `json:"SequenceNumber"`
		ShardID        string `json:"ShardId"`
		ErrorCode      string `json:"ErrorCode"`
		ErrorMessage   string `json:"ErrorMessage"`
	} `json:"Records"`
}

// PutRecords implements API. A refused call is an error implementing
// smithy.APIError with the service's error code (the type
// *types.ProvisionedThroughputExceededException for throttling), so the
// backend classifies it as it does the SDK's errors.
func (l *Lite) PutRecords(ctx context.Context, in *kinesis.PutRecordsInput, _ ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error) {
	req := litePutRequest{StreamName: aws.ToString(in.StreamName), StreamARN: aws.ToString(in.StreamARN),
		Records: make([]litePutRequestEntry, len(in.Records))}
	for i, r := range in.Records {
		req.Records[i] = litePutRequestEntry{Data: r.Data, PartitionKey: aws.ToString(r.PartitionKey), ExplicitHashKey: aws.ToString(r.ExplicitHashKey)}
	}
	body, err := json.Marshal(&req)
	if err != nil {
		return nil, fmt.Errorf("kinesis: encode PutRecords: %w", err)
	}
	var resp litePutResponse
	if err := l.call(ctx, "PutRecords", body, &resp); err != nil {
		return nil, err
	}
	out := &kinesis.PutRecordsOutput{FailedRecordCount: aws.Int32(int32(resp.FailedRecordCount)),
		Records: make([]types.PutRecordsResultEntry, len(resp.Records))}
	for i, r := range resp.Records {
		e := &out.Records[i]
		if r.SequenceNumber != "" {
			e.SequenceNumber, e.ShardId = aws.String(r.SequenceNumber), aws.String(r.ShardID)
		}
		if r.ErrorCode != "" {
			e.ErrorCode, e.ErrorMessage = aws.String(r.ErrorCode), aws.String(r.ErrorMessage)
		}
	}
	return out, nil
}

// call POSTs one signed JSON request and decodes the answer into out.
func (l *Lite) call(ctx context.Context, op string, body []byte, out any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.timeout)
		defer cancel()
	}
	creds, err := l.creds()
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("kinesis: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "Kinesis_20131202."+op)
	sum := sha256.Sum256(body)
	if err := l.signer.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "kinesis", l.region, time.Now()); err != nil {
		return fmt.Errorf("kinesis: sign: %w", err)
	}
	res, err := l.client.Do(req)
	if err != nil {
		return fmt.Errorf("kinesis: %s: %w", op, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("kinesis: %s: read answer: %w", op, err)
	}
	if res.StatusCode/100 != 2 {
		return liteError(res.StatusCode, data)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("kinesis: %s: decode answer: %w", op, err)
	}
	return nil
}

// liteError turns a Kinesis error answer ({"__type": "...#Code",
// "message": "..."}) into a smithy.APIError.
func liteError(status int, data []byte) error {
	var e struct {
		Type     string `json:"__type"`
		Message  string `json:"message"`
		MessageU string `json:"Message"`
	}
	_ = json.Unmarshal(data, &e)
	code := e.Type
	if i := strings.LastIndexByte(code, '#'); i >= 0 {
		code = code[i+1:]
	}
	msg := e.Message
	if msg == "" {
		msg = e.MessageU
	}
	if code == "" {
		code = fmt.Sprintf("HTTP%d", status)
		if msg == "" {
			msg = strings.TrimSpace(string(data[:min(len(data), 200)]))
		}
	}
	fault := smithy.FaultClient
	if status >= 500 {
		fault = smithy.FaultServer
	}
	if code == "ProvisionedThroughputExceededException" {
		return &types.ProvisionedThroughputExceededException{Message: aws.String(msg)}
	}
	return &smithy.GenericAPIError{Code: code, Message: msg, Fault: fault}
}

var errLiteUnsupported = fmt.Errorf("kinesis: the lite client (Lambda extension build) only publishes: %w", errors.ErrUnsupported)

// ListShards implements API; it is unsupported.
func (l *Lite) ListShards(context.Context, *kinesis.ListShardsInput, ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error) {
	return nil, errLiteUnsupported
}

// GetShardIterator implements API; it is unsupported.
func (l *Lite) GetShardIterator(context.Context, *kinesis.GetShardIteratorInput, ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error) {
	return nil, errLiteUnsupported
}

// GetRecords implements API; it is unsupported.
func (l *Lite) GetRecords(context.Context, *kinesis.GetRecordsInput, ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error) {
	return nil, errLiteUnsupported
}

// DescribeStreamSummary implements API; it is unsupported.
func (l *Lite) DescribeStreamSummary(context.Context, *kinesis.DescribeStreamSummaryInput, ...func(*kinesis.Options)) (*kinesis.DescribeStreamSummaryOutput, error) {
	return nil, errLiteUnsupported
}

// CreateStream implements API; it is unsupported.
func (l *Lite) CreateStream(context.Context, *kinesis.CreateStreamInput, ...func(*kinesis.Options)) (*kinesis.CreateStreamOutput, error) {
	return nil, errLiteUnsupported
}
