// Package cwlogs decodes CloudWatch Logs subscription filter payloads (as
// delivered to Kinesis, Firehose or a Lambda destination) into model.Log
// records.
//
// Accepted input: the gzip-compressed JSON document; base64 of it; the
// Lambda destination envelope {"awslogs":{"data":"<base64>"}}; or the
// already-decompressed JSON. DATA_MESSAGE events become one Log each;
// CONTROL_MESSAGE payloads are reported in Info and produce nothing.
//
// The package is pure: no goroutines, logging or package state.
package cwlogs

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/gzip"

	"github.com/les-streams/les/internal/format/jsonscan"
	"github.com/les-streams/les/internal/format/logline"
	"github.com/les-streams/les/internal/model"
)

// DefaultMaxDecompressed bounds the decompressed size of one payload
// (a Kinesis record is at most 1 MiB compressed by default; this leaves room
// for 8:1 compression while stopping gzip bombs).
const DefaultMaxDecompressed = 8 << 20

// DefaultMaxMessageLen is the longest accepted log event (CloudWatch's
// current 1 MB event limit).
const DefaultMaxMessageLen = 1 << 20

// Message types.
const (
	DataMessage    = "DATA_MESSAGE"
	ControlMessage = "CONTROL_MESSAGE"
)

// Attribute keys set on every Log.
const (
	AttrLogGroup            = "log_group"
	AttrLogStream           = "log_stream"
	AttrOwner               = "owner"
	AttrSubscriptionFilters = "subscription_filters" // comma-separated
	AttrEventID             = "event_id"
)

// Reject reasons for single events (the logline reasons apply too).
const (
	ReasonInvalidEvent = "invalid_event" // not an object, or no numeric timestamp
)

// Errors for payloads unusable as a whole; returned errors wrap one of them.
var (
	ErrBase64      = errors.New("cwlogs: bad base64")
	ErrGzip        = errors.New("cwlogs: bad gzip data")
	ErrTooLarge    = errors.New("cwlogs: decompressed payload too large")
	ErrJSON        = errors.New("cwlogs: bad JSON")
	ErrMessageType = errors.New("cwlogs: unknown messageType")
)

// Info describes a decoded payload. Its strings alias the decompressed
// document, which is freshly allocated per call and owned by the caller.
type Info struct {
	MessageType         string
	Owner               string
	LogGroup            string
	LogStream           string
	SubscriptionFilters []string
	// Source is the function name for /aws/lambda/<name> log groups, else
	// the log group.
	Source string
	// Control is true for CONTROL_MESSAGE payloads (nothing is appended).
	Control bool
	// Events is the number of Logs appended.
	Events int
}

// Decoder decodes subscription payloads. The zero value uses the defaults.
// It holds no state between calls and may be copied.
type Decoder struct {
	MaxDecompressed int // default DefaultMaxDecompressed
	MaxMessageLen   int // default DefaultMaxMessageLen
}

// Decode decodes data with a zero Decoder.
func Decode(dst *model.Batch, data []byte) (Info, error) {
	var d Decoder
	return d.Decode(dst, data)
}

// Decode appends one model.Log per log event of data. Each Log has
// Timestamp = the event timestamp (or the one in a Lambda text/JSON prefix),
// Source = Info.Source (a JSON message may name its own), the attributes
// log_group, log_stream, owner, subscription_filters and event_id, and
// RequestID/Level/Message parsed by logline (Lambda's text format
// "<ts>\t<requestId>\t<LEVEL>\t<msg>" and JSON log format are recognised;
// other messages are kept whole). Events failing logline's checks are
// rejected with its reasons; malformed events with ReasonInvalidEvent.
//
// It returns an error wrapping ErrBase64, ErrGzip, ErrTooLarge, ErrJSON or
// ErrMessageType if the payload as a whole is unusable; nothing is appended
// then.
//
// Ownership: the Logs and Info alias a buffer allocated by this call (never
// data), so they stay valid after data is reused; Rejects' Line too.
func (d *Decoder) Decode(dst *model.Batch, data []byte) (Info, error) {
	doc, err := d.document(data)
	if err != nil {
		return Info{}, err
	}
	return d.decodeJSON(dst, doc)
}

func (d *Decoder) maxDecompressed() int {
	if d.MaxDecompressed > 0 {
		return d.MaxDecompressed
	}
	return DefaultMaxDecompressed
}

// document returns the decompressed subscription JSON, in a buffer owned by
// the caller (never aliasing data).
func (d *Decoder) document(data []byte) ([]byte, error) {
	data = bytes.TrimSpace(data)
	if isGzip(data) {
		return d.gunzip(data)
	}
	if len(data) > 0 && data[0] == '{' {
		it := jsonscan.Members(data)
		for it.Next() {
			if !it.KeyIs("awslogs") {
				continue
			}
			in := jsonscan.Members(it.Val)
			for in.Next() {
				if in.KeyIs("data") {
					b, ok := jsonscan.Bytes(in.Val)
					if !ok {
						return nil, fmt.Errorf("%w: awslogs.data is not a string", ErrJSON)
					}
					return d.fromBase64(b)
				}
			}
			return nil, fmt.Errorf("%w: awslogs envelope without data", ErrJSON)
		}
		if it.Err() {
			return nil, fmt.Errorf("%w: malformed object", ErrJSON)
		}
		return bytes.Clone(data), nil // already decompressed
	}
	return d.fromBase64(data)
}

func (d *Decoder) fromBase64(b []byte) ([]byte, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty payload", ErrBase64)
	}
	if base64.StdEncoding.DecodedLen(len(b)) > d.maxDecompressed() {
		return nil, fmt.Errorf("%w: %d base64 bytes", ErrTooLarge, len(b))
	}
	raw := make([]byte, base64.StdEncoding.DecodedLen(len(b)))
	n, err := base64.StdEncoding.Decode(raw, b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBase64, err)
	}
	raw = raw[:n]
	if isGzip(raw) {
		return d.gunzip(raw)
	}
	if t := jsonscan.SkipSpace(raw, 0); t < len(raw) && raw[t] == '{' {
		return raw, nil
	}
	return nil, fmt.Errorf("%w: base64 content is neither gzip nor JSON", ErrGzip)
}

func isGzip(b []byte) bool { return len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b }

func (d *Decoder) gunzip(b []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrGzip, err)
	}
	limit := d.maxDecompressed()
	var buf bytes.Buffer
	buf.Grow(min(limit, 8*len(b)+512))
	n, err := io.Copy(&buf, io.LimitReader(zr, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrGzip, err)
	}
	if n > int64(limit) {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
	}
	return buf.Bytes(), nil
}

// decodeJSON decodes the subscription document doc, which the caller owns
// (messages are unescaped in place).
func (d *Decoder) decodeJSON(dst *model.Batch, doc []byte) (Info, error) {
	doc = bytes.TrimSpace(doc)
	var info Info
	var events, filters []byte
	it := jsonscan.Members(doc)
	for it.Next() {
		switch {
		case it.KeyIs("messageType"):
			info.MessageType, _ = jsonscan.Str(it.Val)
		case it.KeyIs("owner"):
			info.Owner, _ = jsonscan.Str(it.Val)
		case it.KeyIs("logGroup"):
			info.LogGroup, _ = jsonscan.Str(it.Val)
		case it.KeyIs("logStream"):
			info.LogStream, _ = jsonscan.Str(it.Val)
		case it.KeyIs("subscriptionFilters"):
			filters = it.Val
		case it.KeyIs("logEvents"):
			events = it.Val
		}
	}
	if it.Err() {
		return Info{}, fmt.Errorf("%w: malformed subscription document", ErrJSON)
	}
	if jsonscan.KindOf(filters) == jsonscan.Array {
		fi := jsonscan.Elems(filters)
		for fi.Next() {
			if s, ok := jsonscan.Str(fi.Val); ok {
				info.SubscriptionFilters = append(info.SubscriptionFilters, s)
			}
		}
	}
	info.Source = SourceFromLogGroup(info.LogGroup)
	switch info.MessageType {
	case ControlMessage:
		info.Control = true
		return info, nil
	case DataMessage:
	default:
		return info, fmt.Errorf("%w: %q", ErrMessageType, info.MessageType)
	}
	if jsonscan.KindOf(events) != jsonscan.Array {
		return info, fmt.Errorf("%w: logEvents is not an array", ErrJSON)
	}
	joined := strings.Join(info.SubscriptionFilters, ",")
	lines := logline.NewDecoder(logline.Options{DefaultSource: info.Source, MaxLineLen: d.maxMessageLen()})
	ei := jsonscan.Elems(events)
	for ei.Next() {
		var id string
		var msg []byte
		var ts int64
		hasTS := false
		m := jsonscan.Members(ei.Val)
		for m.Next() {
			switch {
			case m.KeyIs("id"):
				id, _ = jsonscan.Str(m.Val)
			case m.KeyIs("timestamp"):
				var ms int64
				ms, hasTS = jsonscan.Int(m.Val)
				ts = ms * 1e6
			case m.KeyIs("message"):
				raw, esc, ok := jsonscan.StringRaw(m.Val)
				if ok && esc {
					raw = jsonscan.UnescapeInPlace(raw)
				}
				msg = raw
			}
		}
		if m.Err() || !hasTS || msg == nil {
			dst.Reject(ReasonInvalidEvent, ei.Val)
			continue
		}
		mark := dst.TagMark()
		dst.AddTag(AttrLogGroup, info.LogGroup)
		dst.AddTag(AttrLogStream, info.LogStream)
		dst.AddTag(AttrOwner, info.Owner)
		dst.AddTag(AttrSubscriptionFilters, joined)
		if id != "" {
			dst.AddTag(AttrEventID, id)
		}
		if lines.DecodeRecord(dst, msg, ts, mark) {
			info.Events++
		}
	}
	return info, nil
}

func (d *Decoder) maxMessageLen() int {
	if d.MaxMessageLen > 0 {
		return d.MaxMessageLen
	}
	return DefaultMaxMessageLen
}

// SourceFromLogGroup returns <name> for "/aws/lambda/<name>", else group.
func SourceFromLogGroup(group string) string {
	if name, ok := strings.CutPrefix(group, "/aws/lambda/"); ok && name != "" {
		return name
	}
	return group
}
