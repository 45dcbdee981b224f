package extension

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Extensions API (2020-01-01) and Telemetry API (2022-07-01) paths,
// relative to http://$AWS_LAMBDA_RUNTIME_API.
const (
	pathRegister  = "/2020-01-01/extension/register"
	pathNext      = "/2020-01-01/extension/event/next"
	pathInitError = "/2020-01-01/extension/init/error"
	pathExitError = "/2020-01-01/extension/exit/error"
	pathTelemetry = "/2022-07-01/telemetry"

	headerName      = "Lambda-Extension-Name"
	headerID        = "Lambda-Extension-Identifier"
	headerErrorType = "Lambda-Extension-Function-Error-Type"
)

// Event types and the Lambda error types les reports.
const (
	EventInvoke   = "INVOKE"
	EventShutdown = "SHUTDOWN"

	ErrorConfigInvalid = "Extension.ConfigInvalid"
	ErrorListen        = "Extension.ListenFailed"
	ErrorFatal         = "Extension.Fatal"
)

// Event is what next returns: an INVOKE or a SHUTDOWN.
type Event struct {
	EventType          string `json:"eventType"`
	DeadlineMs         int64  `json:"deadlineMs"`
	RequestID          string `json:"requestId"`
	InvokedFunctionArn string `json:"invokedFunctionArn"`
	ShutdownReason     string `json:"shutdownReason"`
}

// Deadline is DeadlineMs as a time (zero when absent).
func (e Event) Deadline() time.Time {
	if e.DeadlineMs <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(e.DeadlineMs)
}

// Registered is the register answer.
type Registered struct {
	FunctionName    string `json:"functionName"`
	FunctionVersion string `json:"functionVersion"`
	Handler         string `json:"handler"`
}

// APIError is an answer of the Extensions or Telemetry API other than
// success: its HTTP status and the errorType/errorMessage of its body.
type APIError struct {
	Op      string
	Status  int
	Type    string
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("extensions api: %s: HTTP %d %s: %s", e.Op, e.Status, e.Type, e.Message)
}

// TelemetryNotSupported reports whether err is the answer of a Runtime API
// without the Telemetry API (the classic RIE answers
// Telemetry.NotSupported).
func TelemetryNotSupported(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && (ae.Type == "Telemetry.NotSupported" || ae.Status == http.StatusNotFound)
}

// Client speaks the Extensions and Telemetry APIs for one extension. Next
// has no timeout (it blocks while the sandbox is frozen); the other calls
// are bounded by their ctx.
type Client struct {
	base string
	hc   *http.Client
	id   string
}

// NewClient returns a client of the Runtime API at hostport
// ($AWS_LAMBDA_RUNTIME_API). hc nil uses a plain client without timeout.
func NewClient(hostport string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	}
	return &Client{base: "http://" + hostport, hc: hc}
}

// ID is the Lambda-Extension-Identifier (after Register).
func (c *Client) ID() string { return c.id }

// Register registers the extension for events.
func (c *Client) Register(ctx context.Context, name string, events []string) (Registered, error) {
	var r Registered
	body, _ := json.Marshal(map[string][]string{"events": events})
	res, data, err := c.do(ctx, "register", http.MethodPost, pathRegister, body, map[string]string{headerName: name})
	if err != nil {
		return r, err
	}
	c.id = res.Header.Get(headerID)
	if c.id == "" {
		return r, errors.New("extensions api: register: answer without " + headerID)
	}
	_ = json.Unmarshal(data, &r) // informational
	return r, nil
}

// Next blocks until the next event.
func (c *Client) Next(ctx context.Context) (Event, error) {
	var ev Event
	_, data, err := c.do(ctx, "next", http.MethodGet, pathNext, nil, nil)
	if err != nil {
		return ev, err
	}
	if err := json.Unmarshal(data, &ev); err != nil {
		return ev, fmt.Errorf("extensions api: next: %w", err)
	}
	return ev, nil
}

// InitError reports a failed init (errType like Extension.ConfigInvalid).
// Lambda answers no further call afterwards; the extension should exit.
func (c *Client) InitError(ctx context.Context, errType string, cause error) error {
	return c.reportError(ctx, "init/error", pathInitError, errType, cause)
}

// ExitError reports an unexpected failure before the extension exits.
func (c *Client) ExitError(ctx context.Context, errType string, cause error) error {
	return c.reportError(ctx, "exit/error", pathExitError, errType, cause)
}

func (c *Client) reportError(ctx context.Context, op, path, errType string, cause error) error {
	body, _ := json.Marshal(map[string]any{"errorType": errType, "errorMessage": cause.Error(), "stackTrace": []string{}})
	_, _, err := c.do(ctx, op, http.MethodPost, path, body, map[string]string{headerErrorType: errType})
	return err
}

// Subscription is a Telemetry API subscription request.
type Subscription struct {
	SchemaVersion string      `json:"schemaVersion"`
	Types         []string    `json:"types"`
	Buffering     Buffering   `json:"buffering"`
	Destination   Destination `json:"destination"`
}

// Buffering is the Telemetry API's batching of deliveries.
type Buffering struct {
	MaxItems  int `json:"maxItems"`
	MaxBytes  int `json:"maxBytes"`
	TimeoutMs int `json:"timeoutMs"`
}

// Destination is where Lambda POSTs batches.
type Destination struct {
	Protocol string `json:"protocol"`
	URI      string `json:"URI"`
}

// SubscribeTelemetry subscribes to the Telemetry API.
func (c *Client) SubscribeTelemetry(ctx context.Context, s Subscription) error {
	body, _ := json.Marshal(s)
	res, data, err := c.do(ctx, "telemetry subscribe", http.MethodPut, pathTelemetry, body, map[string]string{"Content-Type": "application/json"})
	if err != nil {
		return err
	}
	// The emulator's stub answers 202 with an error body.
	var e struct {
		Type    string `json:"errorType"`
		Message string `json:"errorMessage"`
	}
	if json.Unmarshal(data, &e) == nil && e.Type != "" {
		return &APIError{Op: "telemetry subscribe", Status: res.StatusCode, Type: e.Type, Message: e.Message}
	}
	return nil
}

func (c *Client) do(ctx context.Context, op, method, path string, body []byte, hdr map[string]string) (*http.Response, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, nil, fmt.Errorf("extensions api: %s: %w", op, err)
	}
	if c.id != "" {
		req.Header.Set(headerID, c.id)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("extensions api: %s: %w", op, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("extensions api: %s: %w", op, err)
	}
	if res.StatusCode/100 != 2 {
		ae := &APIError{Op: op, Status: res.StatusCode}
		var e struct {
			Type    string `json:"errorType"`
			Message string `json:"errorMessage"`
		}
		if json.Unmarshal(data, &e) == nil {
			ae.Type, ae.Message = e.Type, e.Message
		}
		if ae.Type == "" && ae.Message == "" {
			ae.Message = strings.TrimSpace(string(data[:min(len(data), 200)]))
		}
		return nil, nil, ae
	}
	return res, data, nil
}
