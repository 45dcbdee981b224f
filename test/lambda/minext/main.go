// Command minext is the smallest external Lambda extension: it registers
// for INVOKE and SHUTDOWN and calls next again as soon as an event
// arrives, doing nothing else. TestEmulatorMeasure (test/lambda) runs it
// in place of les to split the latency an extension adds under the
// emulator into the emulator's share (what any extension costs) and les'
// own. Standard library only; one connection, no JSON decoding.
package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	base := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2020-01-01/extension"
	req, _ := http.NewRequest(http.MethodPost, base+"/register", strings.NewReader(`{"events":["INVOKE","SHUTDOWN"]}`))
	req.Header.Set("Lambda-Extension-Name", filepath.Base(os.Args[0]))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "minext: register:", err)
		os.Exit(1)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	id := res.Header.Get("Lambda-Extension-Identifier")
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
