package loki

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang/snappy"
	"github.com/les-streams/les/internal/sink/sinktest"
	"google.golang.org/protobuf/encoding/protowire"
)

// fakeLoki is a push endpoint written from Grafana's documentation of
// Loki (docs/sources/reference/loki-http-api.md "Ingest logs",
// pkg/push/push.proto, and the ingestion troubleshooting guide's error
// messages and status codes), not from this package:
//
//   - POST /loki/api/v1/push only; Content-Type application/x-protobuf
//     (a snappy-compressed logproto.PushRequest) or application/json
//     (optionally Content-Encoding: gzip); anything else 415.
//   - Stream labels in Prometheus syntax {a="b"} (protobuf) or a JSON
//     object: at least one label, names [a-zA-Z_][a-zA-Z0-9_]* not __…,
//     no duplicates, at most 15 names, values at most 2048 bytes, valid
//     UTF-8; otherwise the whole request is refused with 400.
//   - Per entry: older than reject_old_samples_max_age (168h) → "has
//     timestamp too old"; newer than now + 10 min → "timestamp too new";
//     a line over 256 KiB → "max entry size"; per stream with unordered
//     writes (the default) older than the stream's newest entry minus 1h
//     → "entry too far behind", with ordered writes older than its last
//     entry → "entry out of order". An entry equal to one the stream holds
//     (timestamp and line) is ignored. The other entries are stored and
//     the answer is 400 listing the refused ones, or 204.
//   - Structured metadata refused (400) when allowMetadata is false, as
//     Loki without allow_structured_metadata does.
//   - Multi-tenant (orgRequired): no X-Scope-OrgID → 401 "no org id".
type fakeLoki struct {
	t   *testing.T
	srv *httptest.Server

	tls           bool
	orgRequired   bool
	orderedWrites bool
	allowMetadata bool
	// auth, if set, must equal the Authorization header (else 401).
	auth string
	// before, if set, may answer a request itself (true: answered).
	before func(w http.ResponseWriter, r *http.Request, n int) bool

	mu       sync.Mutex
	requests []*http.Request
	tenants  map[string]map[string]*fakeStream // tenant → labels (canonical) → stream
}

type fakeStream struct {
	labels  map[string]string
	entries []fakeEntry
	newest  int64
}

type fakeEntry struct {
	ts       int64
	line     string
	metadata map[string]string
}

func newFakeLoki(t *testing.T, configure func(*fakeLoki)) *fakeLoki {
	f := &fakeLoki{t: t, allowMetadata: true, tenants: map[string]map[string]*fakeStream{}}
	if configure != nil {
		configure(f)
	}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are what some tests want
	if f.tls {
		f.srv.StartTLS()
	} else {
		f.srv.Start()
	}
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeLoki) url() string { return f.srv.URL + "/loki/api/v1/push" }

type pushStream struct {
	labels  map[string]string
	raw     string
	entries []fakeEntry
}

func (f *fakeLoki) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r)
	n := len(f.requests) - 1
	f.mu.Unlock()
	if r.URL.Path != "/loki/api/v1/push" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if f.before != nil && f.before(w, r, n) {
		return
	}
	if f.auth != "" && r.Header.Get("Authorization") != f.auth {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	tenant := r.Header.Get("X-Scope-OrgID")
	if tenant == "" {
		if f.orgRequired {
			http.Error(w, "no org id", http.StatusUnauthorized)
			return
		}
		tenant = "fake"
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, "gzip: "+err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var streams []pushStream
	switch ct := r.Header.Get("Content-Type"); ct {
	case "application/x-protobuf":
		streams, err = decodeProtoPush(raw)
	case "application/json":
		streams, err = decodeJSONPush(raw)
	default:
		http.Error(w, "unsupported Content-Type "+ct, http.StatusUnsupportedMediaType)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, s := range streams {
		if err := validateLabels(s.labels); err != nil {
			http.Error(w, fmt.Sprintf("error parsing labels %s with error: %v", s.raw, err), http.StatusBadRequest)
			return
		}
		if !f.allowMetadata {
			for _, e := range s.entries {
				if len(e.metadata) > 0 {
					http.Error(w, fmt.Sprintf("stream '%s' includes structured metadata, but this feature is disallowed. Please see `limits_config.structured_metadata` or contact your Loki administrator to enable it.", s.raw), http.StatusBadRequest)
					return
				}
			}
		}
	}
	var refused []string
	now := time.Now().UnixNano()
	f.mu.Lock()
	defer f.mu.Unlock()
	store := f.tenants[tenant]
	if store == nil {
		store = map[string]*fakeStream{}
		f.tenants[tenant] = store
	}
	for _, ps := range streams {
		key := canonical(ps.labels)
		st := store[key]
		if st == nil {
			st = &fakeStream{labels: ps.labels}
			store[key] = st
		}
		ignored := 0
		for _, e := range ps.entries {
			ts := time.Unix(0, e.ts).UTC()
			switch {
			case e.ts < now-int64(168*time.Hour):
				refused = append(refused, fmt.Sprintf("entry for stream '%s' has timestamp too old: %v, oldest acceptable timestamp is: %v", key, ts, time.Unix(0, now-int64(168*time.Hour)).UTC()))
				continue
			case e.ts > now+int64(10*time.Minute):
				refused = append(refused, fmt.Sprintf("entry for stream '%s' has timestamp too new: %v", key, ts))
				continue
			case len(e.line) > 256<<10:
				refused = append(refused, fmt.Sprintf("max entry size '%d' bytes exceeded for stream '%s' while adding an entry with length '%d' bytes", 256<<10, key, len(e.line)))
				continue
			}
			if slices.ContainsFunc(st.entries, func(x fakeEntry) bool { return x.ts == e.ts && x.line == e.line }) {
				continue // duplicate: ignored
			}
			reason := ""
			switch {
			case f.orderedWrites && len(st.entries) > 0 && e.ts < st.newest:
				reason = "entry out of order"
			case !f.orderedWrites && len(st.entries) > 0 && e.ts < st.newest-int64(time.Hour):
				reason = "entry too far behind, entry timestamp is: " + ts.Format(time.RFC3339) +
					", oldest acceptable timestamp is: " + time.Unix(0, st.newest-int64(time.Hour)).UTC().Format(time.RFC3339)
			}
			if reason != "" {
				ignored++
				refused = append(refused, fmt.Sprintf("entry with timestamp %v ignored, reason: '%s'", ts, reason))
				continue
			}
			st.entries = append(st.entries, e)
			st.newest = max(st.newest, e.ts)
		}
		if ignored > 0 {
			refused[len(refused)-1] += fmt.Sprintf(",\nuser '%s', total ignored: %d out of %d for stream: %s", tenant, ignored, len(ps.entries), key)
		}
	}
	if len(refused) > 0 {
		http.Error(w, strings.Join(refused, "\n"), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func canonical(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(k + "=" + strconv.Quote(labels[k]))
	}
	b.WriteByte('}')
	return b.String()
}

func validateLabels(labels map[string]string) error {
	if len(labels) == 0 {
		return errors.New("error at least one label pair is required per stream")
	}
	if len(labels) > 15 {
		return fmt.Errorf("%d label names; limit 15", len(labels))
	}
	for k, v := range labels {
		if !fakeValidName(k) {
			return fmt.Errorf("invalid label name %q", k)
		}
		if len(v) > 2048 {
			return fmt.Errorf("label value too long: %q", v)
		}
		if !utf8.ValidString(v) {
			return fmt.Errorf("invalid UTF-8 in label value %q", v)
		}
	}
	return nil
}

func fakeValidName(s string) bool {
	if s == "" || strings.HasPrefix(s, "__") {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// parsePromLabels parses {a="b", c="d"} as PromQL does: names, '=', Go
// double-quoted strings, separated by commas; duplicates refused.
func parsePromLabels(s string) (map[string]string, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "{") || !strings.HasSuffix(s, "}") {
		return nil, fmt.Errorf("parse error: expected {…}")
	}
	s = strings.TrimSpace(s[1 : len(s)-1])
	out := map[string]string{}
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			return nil, fmt.Errorf("parse error: no '=' in %q", s)
		}
		name := strings.TrimSpace(s[:eq])
		rest := strings.TrimLeft(s[eq+1:], " ")
		if !strings.HasPrefix(rest, `"`) {
			return nil, fmt.Errorf("parse error: unquoted value for %s", name)
		}
		end := 1
		for ; end < len(rest); end++ {
			if rest[end] == '\\' {
				end++
				continue
			}
			if rest[end] == '"' {
				break
			}
			if rest[end] == '\n' {
				return nil, errors.New("parse error: unterminated quoted string")
			}
		}
		if end >= len(rest) {
			return nil, errors.New("parse error: unterminated quoted string")
		}
		v, err := strconv.Unquote(rest[:end+1])
		if err != nil {
			return nil, fmt.Errorf("parse error: %v", err)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("duplicate label name: %s", name)
		}
		out[name] = v
		s = strings.TrimSpace(rest[end+1:])
		if s != "" {
			if s[0] != ',' {
				return nil, fmt.Errorf("parse error: expected ',' at %q", s)
			}
			s = strings.TrimSpace(s[1:])
		}
	}
	return out, nil
}

// decodeProtoPush decodes a snappy-compressed PushRequest with protowire
// (field numbers from push.proto).
func decodeProtoPush(body []byte) ([]pushStream, error) {
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	var out []pushStream
	err = sinktest.ProtoFields(raw, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if num != 1 || typ != protowire.BytesType {
			return fmt.Errorf("PushRequest: unexpected field %d", num)
		}
		var ps pushStream
		err := sinktest.ProtoFields(v, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
			switch {
			case num == 1 && typ == protowire.BytesType:
				ps.raw = string(v)
			case num == 2 && typ == protowire.BytesType:
				e, err := decodeEntry(v)
				if err != nil {
					return err
				}
				ps.entries = append(ps.entries, e)
			default:
				return fmt.Errorf("StreamAdapter: unexpected field %d", num)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if ps.labels, err = parsePromLabels(ps.raw); err != nil {
			return fmt.Errorf("error parsing labels %s with error: %v", ps.raw, err)
		}
		out = append(out, ps)
		return nil
	})
	return out, err
}

func decodeEntry(b []byte) (fakeEntry, error) {
	var e fakeEntry
	err := sinktest.ProtoFields(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch {
		case num == 1 && typ == protowire.BytesType: // google.protobuf.Timestamp
			var sec, nsec int64
			err := sinktest.ProtoFields(v, func(num protowire.Number, typ protowire.Type, _ []byte, x uint64) error {
				switch {
				case num == 1 && typ == protowire.VarintType:
					sec = int64(x)
				case num == 2 && typ == protowire.VarintType:
					nsec = int64(int32(x))
				default:
					return fmt.Errorf("Timestamp: unexpected field %d", num)
				}
				return nil
			})
			e.ts = sec*1e9 + nsec
			return err
		case num == 2 && typ == protowire.BytesType:
			e.line = string(v)
		case num == 3 && typ == protowire.BytesType:
			var name, value string
			err := sinktest.ProtoFields(v, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
				switch {
				case num == 1 && typ == protowire.BytesType:
					name = string(v)
				case num == 2 && typ == protowire.BytesType:
					value = string(v)
				default:
					return fmt.Errorf("LabelPairAdapter: unexpected field %d", num)
				}
				return nil
			})
			if e.metadata == nil {
				e.metadata = map[string]string{}
			}
			e.metadata[name] = value
			return err
		default:
			return fmt.Errorf("EntryAdapter: unexpected field %d", num)
		}
		return nil
	})
	return e, err
}

// decodeJSONPush decodes the JSON body: values are [ts, line] or
// [ts, line, {metadata}], ts a string of Unix nanoseconds.
func decodeJSONPush(body []byte) ([]pushStream, error) {
	var req struct {
		Streams []struct {
			Stream map[string]string `json:"stream"`
			Values [][]json.RawMessage
		} `json:"streams"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, err
	}
	var out []pushStream
	for _, s := range req.Streams {
		ps := pushStream{labels: s.Stream, raw: canonical(s.Stream)}
		for _, v := range s.Values {
			if len(v) != 2 && len(v) != 3 {
				return nil, fmt.Errorf("a value has %d elements", len(v))
			}
			var tss string
			var e fakeEntry
			if err := json.Unmarshal(v[0], &tss); err != nil {
				return nil, fmt.Errorf("timestamp: %w", err)
			}
			ts, err := strconv.ParseInt(tss, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("timestamp: %w", err)
			}
			e.ts = ts
			if err := json.Unmarshal(v[1], &e.line); err != nil {
				return nil, fmt.Errorf("line: %w", err)
			}
			if len(v) == 3 {
				if err := json.Unmarshal(v[2], &e.metadata); err != nil {
					return nil, fmt.Errorf("structured metadata: %w", err)
				}
			}
			ps.entries = append(ps.entries, e)
		}
		out = append(out, ps)
	}
	return out, nil
}

// streams returns what tenant holds, sorted by labels.
func (f *fakeLoki) streams(tenant string) []*fakeStream {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*fakeStream
	keys := make([]string, 0, len(f.tenants[tenant]))
	for k := range f.tenants[tenant] {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, f.tenants[tenant][k])
	}
	return out
}

func (f *fakeLoki) numRequests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.requests)
}
