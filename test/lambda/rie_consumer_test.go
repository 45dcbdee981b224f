//go:build linux

package lambda_test

// Helpers to run a function under the real AWS Lambda Runtime Interface
// Emulator. (The consumer's tests use them; the extension's tests may
// share them.)

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// rieModule is the RIE version the tests run.
const rieModule = "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@v0.0.0-20261030222936-bef5c4ba774d"

// missing skips the test, or fails it under CI (env CI set), when a
// component it needs is not available.
func missing(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI: "+format, args...)
	}
	t.Skipf(format, args...)
}

// moduleRoot is the directory of go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(string(bytes.TrimSpace(out)))
}

var (
	rieOnce sync.Once
	riePath string
	rieErr  error
)

// consumerRIE builds the RIE once per test binary (go install into a
// temp dir; the module cache makes it quick after the first time).
func consumerRIE(t *testing.T) string {
	t.Helper()
	rieOnce.Do(func() {
		dir, err := os.MkdirTemp("", "les-rie-")
		if err != nil {
			rieErr = err
			return
		}
		cmd := exec.Command("go", "install", rieModule)
		cmd.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			rieErr = errors.New(string(out))
			return
		}
		riePath = filepath.Join(dir, "aws-lambda-rie")
	})
	if rieErr != nil {
		missing(t, "building the RIE (%s): %v", rieModule, rieErr)
	}
	return riePath
}

var (
	zipOnce      sync.Once
	zipBootstrap string
	zipErr       error
)

// consumerZipBootstrap builds dist/les-consumer-<arch>.zip for this
// machine's architecture with scripts/consumer.sh (once per test binary,
// into a temp dir) and returns a copy of the bootstrap extracted from it
// in a directory of the test's own.
func consumerZipBootstrap(t *testing.T) string {
	t.Helper()
	arch := map[string]string{"amd64": "x86_64", "arm64": "arm64"}[runtime.GOARCH]
	if arch == "" || runtime.GOOS != "linux" {
		missing(t, "Lambda runs linux/amd64 and linux/arm64, this is %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	root := moduleRoot(t)
	zipOnce.Do(func() {
		dist, err := os.MkdirTemp("", "les-consumer-dist-")
		if err != nil {
			zipErr = err
			return
		}
		cmd := exec.Command("bash", filepath.Join(root, "scripts", "consumer.sh"), arch)
		cmd.Env = append(os.Environ(), "DIST="+dist, "VERSION=test")
		if out, err := cmd.CombinedOutput(); err != nil {
			zipErr = fmt.Errorf("scripts/consumer.sh: %v\n%s", err, out)
			return
		}
		zipBootstrap = filepath.Join(dist, "les-consumer-"+arch+".zip")
	})
	if zipErr != nil {
		t.Fatal(zipErr)
	}
	zr, err := zip.OpenReader(zipBootstrap)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	if len(zr.File) != 1 || zr.File[0].Name != "bootstrap" {
		var names []string
		for _, f := range zr.File {
			names = append(names, f.Name)
		}
		t.Fatalf("zip holds %v, want just bootstrap", names)
	}
	src, err := zr.File[0].Open()
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	path := filepath.Join(t.TempDir(), "bootstrap")
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// rieClient makes no keep-alive connections, so no goroutine outlives a test.
var rieClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// rieProc is a running RIE serving one function.
type rieProc struct {
	url  string // invocations endpoint
	cmd  *exec.Cmd
	logs *lockedBuffer
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startConsumerRIE runs bootstrap under the RIE in classic mode with env.
// The RIE takes the bootstrap path as its argument and runs it in the
// current directory, so the function needs no /var/task. It starts every
// file in /opt/extensions: when that directory exists here, the RIE runs
// (as root) in its own mount namespace with an empty /opt bound over it.
// The RIE is killed when the test ends.
func startConsumerRIE(t *testing.T, bootstrap string, env ...string) *rieProc {
	t.Helper()
	rie := consumerRIE(t)
	api, emu := freeAddr(t), freeAddr(t)
	args := []string{rie, "--runtime-interface-emulator-address", emu, "--runtime-api-address", api, bootstrap}
	if _, err := os.Stat("/opt/extensions"); err == nil {
		if os.Geteuid() != 0 {
			missing(t, "/opt/extensions exists and isolating the RIE from it needs root (unshare -m)")
		}
		if _, err := exec.LookPath("unshare"); err != nil {
			missing(t, "unshare not found: %v", err)
		}
		empty := t.TempDir()
		args = append([]string{"unshare", "-m", "--propagation", "private", "sh", "-c",
			`mount --bind "$0" /opt && exec "$@"`, empty}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = filepath.Dir(bootstrap)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"AWS_LAMBDA_FUNCTION_NAME=les-consumer", "AWS_LAMBDA_FUNCTION_TIMEOUT=10", "AWS_REGION=eu-west-1"}, env...)
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &rieProc{url: "http://" + emu + "/2015-03-31/functions/function/invocations", cmd: cmd, logs: logs}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the RIE and the function it started
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("RIE output:\n%s", logs.String())
		}
	})
	return p
}

// invoke posts event to the RIE and returns the function's response. It
// retries while the RIE is not yet listening (until ctx ends).
func (p *rieProc) invoke(ctx context.Context, t *testing.T, event []byte) []byte {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(event))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := rieClient.Do(req)
		if err == nil {
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			return body
		}
		if !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("invoke: %v", err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the RIE did not listen: %v", err)
		case <-tick.C:
		}
	}
}
