package extension_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeAPI is a Runtime API server that follows AWS's documented
// Extensions API (2020-01-01) and Telemetry API (2022-07-01): register
// answers 200 with Lambda-Extension-Identifier, next blocks until the test
// sends an event, init/error and exit/error answer 202, calls without the
// identifier answer 403 Extension.MissingExtensionIdentifier, and a
// telemetry subscription answers 200 "OK" (or what telemetryErr says).
type fakeAPI struct {
	t   *testing.T
	srv *httptest.Server

	events chan string   // JSON events next returns
	nexts  chan struct{} // a next call arrived (buffered)

	mu           sync.Mutex
	registerHdr  http.Header
	registerBody map[string][]string
	subscription map[string]any
	initErrors   []apiErrorCall
	exitErrors   []apiErrorCall
	telemetryErr string // errorType to refuse the subscription with
	nextFails    bool   // next answers 500
}

type apiErrorCall struct {
	Type string
	Body map[string]any
}

const fakeID = "5f0b6a4e-7f6b-4b8e-9d3a-1c2b3a4d5e6f"

func newFakeAPI(t *testing.T) *fakeAPI {
	f := &fakeAPI{t: t, events: make(chan string), nexts: make(chan struct{}, 64)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /2020-01-01/extension/register", func(w http.ResponseWriter, r *http.Request) {
		var body map[string][]string
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			apiError(w, 400, "InvalidRequestFormat", err.Error())
			return
		}
		if r.Header.Get("Lambda-Extension-Name") == "" {
			apiError(w, 403, "Extension.InvalidExtensionName", "missing Lambda-Extension-Name")
			return
		}
		f.mu.Lock()
		f.registerHdr, f.registerBody = r.Header.Clone(), body
		f.mu.Unlock()
		w.Header().Set("Lambda-Extension-Identifier", fakeID)
		_, _ = io.WriteString(w, `{"functionName":"fn","functionVersion":"$LATEST","handler":"bootstrap"}`)
	})
	mux.HandleFunc("GET /2020-01-01/extension/event/next", func(w http.ResponseWriter, r *http.Request) {
		if !f.identified(w, r) {
			return
		}
		f.nexts <- struct{}{}
		f.mu.Lock()
		fails := f.nextFails
		f.mu.Unlock()
		if fails {
			apiError(w, 500, "ServiceException", "next failed")
			return
		}
		select {
		case ev := <-f.events:
			w.Header().Set("Lambda-Extension-Event-Identifier", "ev")
			_, _ = io.WriteString(w, ev)
		case <-r.Context().Done():
		}
	})
	errCall := func(dst *[]apiErrorCall) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if !f.identified(w, r) {
				return
			}
			typ := r.Header.Get("Lambda-Extension-Function-Error-Type")
			if typ == "" {
				apiError(w, 403, "Extension.MissingHeader", "missing Lambda-Extension-Function-Error-Type")
				return
			}
			var body map[string]any
			_ = json.NewDecoder(r.Body).Decode(&body)
			f.mu.Lock()
			*dst = append(*dst, apiErrorCall{typ, body})
			f.mu.Unlock()
			w.WriteHeader(http.StatusAccepted)
			_, _ = io.WriteString(w, `{"status":"OK"}`)
		}
	}
	mux.HandleFunc("POST /2020-01-01/extension/init/error", errCall(&f.initErrors))
	mux.HandleFunc("POST /2020-01-01/extension/exit/error", errCall(&f.exitErrors))
	mux.HandleFunc("PUT /2022-07-01/telemetry", func(w http.ResponseWriter, r *http.Request) {
		if !f.identified(w, r) {
			return
		}
		var sub map[string]any
		if err := json.NewDecoder(r.Body).Decode(&sub); err != nil {
			apiError(w, 400, "ValidationError", err.Error())
			return
		}
		f.mu.Lock()
		f.subscription = sub
		refuse := f.telemetryErr
		f.mu.Unlock()
		if refuse != "" {
			apiError(w, 202, refuse, "Telemetry API is not supported")
			return
		}
		_, _ = io.WriteString(w, "OK")
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.close)
	return f
}

// close ends blocked next calls and the server.
func (f *fakeAPI) close() {
	f.srv.CloseClientConnections()
	f.srv.Close()
}

func (f *fakeAPI) identified(w http.ResponseWriter, r *http.Request) bool {
	if r.Header.Get("Lambda-Extension-Identifier") != fakeID {
		apiError(w, 403, "Extension.MissingExtensionIdentifier", "missing or unknown Lambda-Extension-Identifier")
		return false
	}
	return true
}

func apiError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"errorType": typ, "errorMessage": msg})
	_, _ = w.Write(b)
}

// hostport is the value of AWS_LAMBDA_RUNTIME_API.
func (f *fakeAPI) hostport() string { return strings.TrimPrefix(f.srv.URL, "http://") }

// waitNext waits for the extension's next call.
func (f *fakeAPI) waitNext() {
	f.t.Helper()
	<-f.nexts
}

// send answers the pending next with ev.
func (f *fakeAPI) send(ev string) { f.events <- ev }
