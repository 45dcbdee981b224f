// Command minext is the smallest external Lambda extension: it registers
// for INVOKE and SHUTDOWN and calls next again as soon as an event
// arrives, doing nothing else. TestEmulatorMeasure (test/lambda) runs it
// in place of les to split the latency an extension adds under the
// emulator into the emulator's share (what any extension costs) and les'
// own. On Lambda Managed Instances (AWS_LAMBDA_INITIALIZATION_TYPE
// lambda-managed-instances), where an extension may register only for
// SHUTDOWN, it registers for SHUTDOWN alone and waits in next. Standard
// library only; one connection, no JSON decoding.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	base := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2020-01-01/extension"
	events := `{"events":["INVOKE","SHUTDOWN"]}`
	if os.Getenv("AWS_LAMBDA_INITIALIZATION_TYPE") == "lambda-managed-instances" {
		events = `{"events":["SHUTDOWN"]}`
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/register", strings.NewReader(events))
	req.Header.Set("Lambda-Extension-Name", filepath.Base(os.Args[0]))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "minext: register:", err)
		os.Exit(1)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	id := res.Header.Get("Lambda-Extension-Identifier")
	if os.Getenv("MINEXT_RAW") != "" {
		raw(id)
		return
	}
	for {
		req, _ := http.NewRequest(http.MethodGet, base+"/event/next", nil)
		req.Header.Set("Lambda-Extension-Identifier", id)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Fprintln(os.Stderr, "minext: next:", err)
			os.Exit(1)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if bytes.Contains(body, []byte(`"SHUTDOWN"`)) {
			return
		}
	}
}

// raw is the next loop over one TCP connection written and read by this
// goroutine alone (MINEXT_RAW set): net/http's Transport hands every
// request to a write and a read goroutine of its connection, so that
// each next costs goroutine wake-ups that this loop does not.
// TestEmulatorMeasure compares the two (what an extension's HTTP client
// adds to the emulator's hold).
func raw(id string) {
	c, err := net.Dial("tcp", os.Getenv("AWS_LAMBDA_RUNTIME_API"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "minext: dial:", err)
		os.Exit(1)
	}
	req := []byte("GET /2020-01-01/extension/event/next HTTP/1.1\r\nHost: " + os.Getenv("AWS_LAMBDA_RUNTIME_API") +
		"\r\nLambda-Extension-Identifier: " + id + "\r\n\r\n")
	br := bufio.NewReader(c)
	for {
		if _, err := c.Write(req); err != nil {
			fmt.Fprintln(os.Stderr, "minext: next:", err)
			os.Exit(1)
		}
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, "minext: next:", err)
			os.Exit(1)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if bytes.Contains(body, []byte(`"SHUTDOWN"`)) {
			return
		}
	}
}
