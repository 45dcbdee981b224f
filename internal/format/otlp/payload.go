package otlp

import (
	"errors"
	"fmt"
	"mime"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/les-streams/les/internal/model"
)

// Encoding is how an OTLP/HTTP body is encoded.
type Encoding uint8

const (
	EncodingProto Encoding = iota // application/x-protobuf
	EncodingJSON                  // application/json (OTLP's JSON mapping)
)

// ContentType returns the media type of e.
func (e Encoding) ContentType() string {
	if e == EncodingJSON {
		return "application/json"
	}
	return "application/x-protobuf"
}

// ParseContentType maps an OTLP/HTTP Content-Type header to an Encoding;
// ok is false for anything but application/x-protobuf (also
// application/protobuf) and application/json, parameters ignored.
func ParseContentType(ct string) (e Encoding, ok bool) {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return 0, false
	}
	switch mt {
	case "application/x-protobuf", "application/protobuf":
		return EncodingProto, true
	case "application/json":
		return EncodingJSON, true
	}
	return 0, false
}

// ErrPayload is returned when a body is not a valid export request.
var ErrPayload = errors.New("otlp: invalid payload")

// Signal is what an export request carries.
type Signal uint8

const (
	SignalMetrics Signal = iota
	SignalLogs
	SignalTraces
)

func (s Signal) String() string {
	return [...]string{"metrics", "logs", "traces"}[s]
}

// Decode parses payload, an Export{Metrics,Logs,Trace}ServiceRequest in
// encoding e, and appends its items to dst as Metrics, Logs or Traces do.
// It returns the number of OTLP items (data points, log records, spans)
// the request held; the rejected ones are the model.Rejects appended. The
// error (wrapping ErrPayload) is for a payload that does not parse; then
// nothing is appended. now (Unix ns) stands in for missing timestamps.
//
// Ownership: items alias a request Decode allocates and payload is not
// kept (pdata copies strings), so items stay valid after payload is
// reused; see Decoder for the rest.
func (d *Decoder) Decode(dst *model.Batch, sig Signal, payload []byte, e Encoding, now int64) (int, error) {
	unmarshal := func(proto func([]byte) error, json func([]byte) error) error {
		var err error
		if e == EncodingJSON {
			err = json(payload)
		} else {
			err = proto(payload)
		}
		if err != nil {
			return fmt.Errorf("%w: %s %s: %v", ErrPayload, sig, e.name(), err)
		}
		return nil
	}
	switch sig {
	case SignalMetrics:
		req := pmetricotlp.NewExportRequest()
		if err := unmarshal(req.UnmarshalProto, req.UnmarshalJSON); err != nil {
			return 0, err
		}
		d.Metrics(dst, req.Metrics(), now)
		return PointCount(req.Metrics()), nil
	case SignalLogs:
		req := plogotlp.NewExportRequest()
		if err := unmarshal(req.UnmarshalProto, req.UnmarshalJSON); err != nil {
			return 0, err
		}
		d.Logs(dst, req.Logs(), now)
		return req.Logs().LogRecordCount(), nil
	case SignalTraces:
		req := ptraceotlp.NewExportRequest()
		if err := unmarshal(req.UnmarshalProto, req.UnmarshalJSON); err != nil {
			return 0, err
		}
		d.Traces(dst, req.Traces())
		return req.Traces().SpanCount(), nil
	}
	return 0, fmt.Errorf("%w: unknown signal %d", ErrPayload, sig)
}

func (e Encoding) name() string {
	if e == EncodingJSON {
		return "json"
	}
	return "protobuf"
}
