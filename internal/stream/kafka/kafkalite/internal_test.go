package kafkalite

import (
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestVersions: the versions this package caps each request at exist in
// kmsg, and its flexible-version table agrees with kmsg's IsFlexible.
func TestVersions(t *testing.T) {
	for _, req := range []kmsg.Request{kmsg.NewPtrProduceRequest(), kmsg.NewPtrMetadataRequest(), kmsg.NewPtrSASLHandshakeRequest(),
		kmsg.NewPtrApiVersionsRequest(), kmsg.NewPtrCreateTopicsRequest(), kmsg.NewPtrInitProducerIDRequest(), kmsg.NewPtrSASLAuthenticateRequest()} {
		hi, flex, ok := maxVersion(req.Key())
		if !ok || hi > req.MaxVersion() {
			t.Fatalf("key %d: cap %d (known %v), kmsg max %d", req.Key(), hi, ok, req.MaxVersion())
		}
		for v := int16(0); v <= hi; v++ {
			req.SetVersion(v)
			if req.IsFlexible() != (v >= flex) {
				t.Errorf("key %d v%d: kmsg flexible %v, table says from v%d", req.Key(), v, req.IsFlexible(), flex)
			}
		}
	}
}

// TestErrorsMatchKerr: the error table has franz-go's names and
// retriability.
func TestErrorsMatchKerr(t *testing.T) {
	for _, e := range kafkaErrors {
		k, ok := kerr.ErrorForCode(e.Code).(*kerr.Error)
		if !ok || k.Message != e.Name || k.Retriable != e.Retriable {
			t.Errorf("code %d: %+v, kerr has %+v", e.Code, e, k)
		}
	}
	if err := errorForCode(999); err == nil || retriable(err) {
		t.Errorf("unknown code: %v", err)
	}
}

func yamlKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		k := prefix + f.Tag.Get("yaml")
		keys = append(keys, k)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)) {
			keys = append(keys, yamlKeys(f.Type, k+".")...)
		}
	}
	return keys
}
