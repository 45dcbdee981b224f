// Package kinesistest runs kinesalite, a Kinesis-compatible server on
// Node.js (test/kinesalite), for tests of the Kinesis input, and builds
// CloudWatch Logs subscription payloads as CloudWatch writes them into
// Kinesis records.
package kinesistest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// Region is the region the test clients use (kinesalite accepts any).
const Region = "us-east-1"

// Start starts kinesalite on a free port of 127.0.0.1 and returns its
// endpoint URL; it is stopped when the test ends. When node or
// test/kinesalite/node_modules (scripts/test.sh runs npm ci) is missing the
// test is skipped — or, with CI set, fails: there a missing component is
// a broken set-up, not a reason to test less.
func Start(t testing.TB) string {
	t.Helper()
	missing := t.Skipf
	if os.Getenv("CI") != "" {
		missing = t.Fatalf
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("kinesalite: node not found in PATH; install Node.js to run the Kinesis tests")
	}
	dir, err := kinesaliteDir()
	if err != nil {
		missing("kinesalite: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "kinesalite")); err != nil {
		missing("kinesalite: %s/node_modules missing; run `npm ci` there (scripts/test.sh does)", dir)
	}
	cmd := exec.Command(node, "start.js", "0")
	cmd.Dir = dir
	// Its own process group: a signal meant for another process group
	// (tests running in parallel stop their les processes) never stops it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe() // closing it stops kinesalite
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var (
		stderrMu sync.Mutex
		stderr   bytes.Buffer
	)
	cmd.Stderr = writerFunc(func(p []byte) (int, error) {
		stderrMu.Lock()
		defer stderrMu.Unlock()
		return stderr.Write(p)
	})
	stderrText := func() string {
		stderrMu.Lock()
		defer stderrMu.Unlock()
		return stderr.String()
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("kinesalite: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case err := <-exited: // it should still run: say why it did not
			t.Errorf("kinesalite exited during the test (%v); stderr:\n%s", err, stderrText())
			return
		default:
		}
		_ = stdin.Close()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	portc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if p, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
				portc <- p
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case p := <-portc:
		return "http://127.0.0.1:" + p
	case <-time.After(30 * time.Second):
		t.Fatalf("kinesalite did not start in 30s; stderr:\n%s", stderrText())
	}
	return ""
}

// kinesaliteDir finds test/kinesalite above the working directory.
func kinesaliteDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "test", "kinesalite"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("module root (go.mod) not found")
		}
		dir = parent
	}
}

// AWSEnv gives the AWS SDK's default chain, in this process and in the
// processes it starts, dummy credentials and the test region, and nothing
// else (no shared files, profiles, instance metadata or endpoint
// overrides), for the duration of the test.
func AWSEnv(t testing.TB) {
	t.Helper()
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_SESSION_TOKEN": "", "AWS_PROFILE": "",
		"AWS_REGION": Region, "AWS_CONFIG_FILE": filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"), "AWS_EC2_METADATA_DISABLED": "true",
		"AWS_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_KINESIS": "",
	} {
		t.Setenv(k, v)
	}
}

// Client returns a Kinesis client for endpoint with dummy static
// credentials.
func Client(endpoint string) *kinesis.Client {
	return kinesis.New(kinesis.Options{
		Region:       Region,
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("x", "x", ""),
	})
}

// CreateStream creates stream with shards shards and waits until it is
// ACTIVE.
func CreateStream(t testing.TB, c *kinesis.Client, stream string, shards int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(stream), ShardCount: aws.Int32(shards)}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	for {
		out, err := c.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(stream)})
		if err != nil {
			t.Fatalf("describe stream: %v", err)
		}
		if out.StreamDescriptionSummary.StreamStatus == types.StreamStatusActive {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Put writes each data as one record (partition keys "pk-<i>", so records
// spread over the shards) and fails the test unless every record was
// accepted.
func Put(t testing.TB, c *kinesis.Client, stream string, data ...[]byte) {
	t.Helper()
	in := &kinesis.PutRecordsInput{StreamName: aws.String(stream)}
	for i, d := range data {
		in.Records = append(in.Records, types.PutRecordsRequestEntry{Data: d, PartitionKey: aws.String(fmt.Sprintf("pk-%d", i))})
	}
	out, err := c.PutRecords(context.Background(), in)
	if err != nil {
		t.Fatalf("put records: %v", err)
	}
	if n := aws.ToInt32(out.FailedRecordCount); n != 0 {
		t.Fatalf("put records: %d failed", n)
	}
}

// Event is one CloudWatch Logs event.
type Event struct {
	ID        string `json:"id"`
	Timestamp int64  `json:"timestamp"` // Unix milliseconds
	Message   string `json:"message"`
}

// DataMessage returns a gzip-compressed DATA_MESSAGE for logGroup and
// logStream, exactly as CloudWatch Logs writes it into a Kinesis record.
func DataMessage(logGroup, logStream string, events ...Event) []byte {
	return gz(map[string]any{
		"messageType":         "DATA_MESSAGE",
		"owner":               "123456789012",
		"logGroup":            logGroup,
		"logStream":           logStream,
		"subscriptionFilters": []string{"les"},
		"logEvents":           events,
	})
}

// ControlMessage returns the gzip-compressed CONTROL_MESSAGE CloudWatch
// writes to check that a destination is reachable.
func ControlMessage() []byte {
	return gz(map[string]any{
		"messageType":         "CONTROL_MESSAGE",
		"owner":               "CloudwatchLogs",
		"logGroup":            "",
		"logStream":           "",
		"subscriptionFilters": []string{},
		"logEvents": []Event{{ID: "", Timestamp: time.Now().UnixMilli(),
			Message: "CWL CONTROL MESSAGE: Checking health of destination Kinesis stream."}},
	})
}

func gz(v any) []byte {
	j, err := json.Marshal(v)
	if err != nil {
		panic(err) // only fixed shapes are marshalled
	}
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, _ = zw.Write(j)
	_ = zw.Close()
	return b.Bytes()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
