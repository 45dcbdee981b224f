// Command les-consumer is les' back half as an AWS Lambda function (the
// `bootstrap` of the provided.al2023 runtime): behind a Kinesis (or
// MSK/Kafka) event source mapping it decodes les records, runs logmetric
// and delivers to the sinks of les.yaml, answering with batchItemFailures.
// See internal/lambda/consumer/README.md.
//
// Config: the file named by LES_CONFIG (default /var/task/les.yaml), with
// ${ENV} references replaced from the function's environment. A missing or
// malformed config is reported through the Runtime API's init error
// (Runtime.ConfigInvalid) with the located message, and the process exits.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/les-streams/les/internal/app"
)

var version = "dev"

// DefaultConfig is where the function's les.yaml is looked for.
const DefaultConfig = "/var/task/les.yaml"

func main() {
	c, err := setup(os.Getenv, os.Stderr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "les-consumer: %v\n", err)
		if api := os.Getenv("AWS_LAMBDA_RUNTIME_API"); api != "" {
			if rerr := reportInitError(api, err); rerr != nil {
				fmt.Fprintf(os.Stderr, "les-consumer: reporting the init error: %v\n", rerr)
			}
		}
		os.Exit(1)
	}
	lambda.StartWithOptions(c, lambda.WithEnableSIGTERM(func() { _ = c.Close() }))
}

// setup loads the config and builds the handler; it does no network I/O.
func setup(getenv func(string) string, stderr io.Writer) (*app.LambdaConsumer, error) {
	path := getenv("LES_CONFIG")
	if path == "" {
		path = DefaultConfig
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no config: set LES_CONFIG to a les.yaml, or put one at %s (its sinks: section says where records go)", DefaultConfig)
		}
	}
	cfg, err := app.Load(path)
	if err != nil {
		return nil, err
	}
	log := cfg.Log.NewLogger(stderr)
	c, err := app.NewLambdaConsumer(cfg, log, app.LambdaConsumerOptions{Backends: app.ClientBackends()})
	if err != nil {
		return nil, err
	}
	log.Info("les-consumer ready", "version", version, "config", path, "sinks", len(cfg.Sinks))
	return c, nil
}

// reportInitError posts err to the Runtime API's init error endpoint, so
// that Lambda (and the RIE) answer the invocation with it.
func reportInitError(api string, err error) error {
	body, _ := json.Marshal(map[string]any{"errorMessage": err.Error(), "errorType": "Runtime.ConfigInvalid"})
	req, rerr := http.NewRequest(http.MethodPost, "http://"+api+"/2018-06-01/runtime/init/error", bytes.NewReader(body))
	if rerr != nil {
		return rerr
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Lambda-Runtime-Function-Error-Type", "Runtime.ConfigInvalid")
	client := &http.Client{Timeout: 2 * time.Second}
	resp, rerr := client.Do(req)
	if rerr != nil {
		return rerr
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("runtime API answered %s", resp.Status)
	}
	return nil
}
