package kafkalite

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"gopkg.in/yaml.v3"

	"github.com/les-streams/les/internal/stream/kafka"
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

// TestConfigMatchesKafka: Config has exactly internal/stream/kafka's YAML
// keys, and both Validate functions accept and reject the same blocks,
// filling the same defaults.
func TestConfigMatchesKafka(t *testing.T) {
	full, lite := yamlKeys(reflect.TypeOf(kafka.Config{}), ""), yamlKeys(reflect.TypeOf(Config{}), "")
	if !reflect.DeepEqual(full, lite) {
		t.Fatalf("yaml keys differ:\nkafka     %v\nkafkalite %v", full, lite)
	}
	for _, block := range []string{
		`brokers: [a:9092]`,
		`brokers: [a:9092, b:9093]
topic_prefix: x.y_z-1
create_topics: false
replication_factor: -1
max_record_bytes: 2048
client_id: me
produce_timeout: 3s
tls: {enabled: true, server_name: k, insecure_skip_verify: true}
sasl: {mechanism: SCRAM-SHA-512, username: u, password: p}`,
		`brokers: []`,
		`brokers: [nohost]`,
		`{brokers: [a:1], topic_prefix: "a/b"}`,
		`{brokers: [a:1], replication_factor: -2}`,
		`{brokers: [a:1], max_record_bytes: -1}`,
		`{brokers: [a:1], produce_timeout: -1s}`,
		`{brokers: [a:1], session_timeout: 500ms}`,
		`{brokers: [a:1], instance_id: "a b"}`,
		`{brokers: [a:1], instance_id: ".."}`,
		`{brokers: [a:1], tls: {ca_file: x}}`,
		`{brokers: [a:1], tls: {enabled: true, cert_file: x}}`,
		`{brokers: [a:1], sasl: {username: u}}`,
		`{brokers: [a:1], sasl: {mechanism: gssapi, username: u, password: p}}`,
		`{brokers: [a:1], sasl: {mechanism: plain, password: p}}`,
		`{brokers: [a:1], sasl: {mechanism: plain, username: u}}`,
		`{brokers: [a:1], sasl: {mechanism: plain, username: u, password: p, password_file: f}}`,
	} {
		var f kafka.Config
		var l Config
		if err := yaml.Unmarshal([]byte(block), &f); err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal([]byte(block), &l); err != nil {
			t.Fatal(err)
		}
		ef, el := f.Validate(), l.Validate()
		if (ef == nil) != (el == nil) {
			t.Errorf("%s:\nkafka: %v\nkafkalite: %v", block, ef, el)
			continue
		}
		if ef != nil && strings.SplitN(ef.Error(), ":", 2)[0] != strings.SplitN(el.Error(), ":", 2)[0] {
			t.Errorf("%s: kafka names %q, kafkalite %q", block, ef, el)
		}
		if ef == nil {
			fv, lv := reflect.ValueOf(f), reflect.ValueOf(l)
			for i := range fv.NumField() {
				a, b := fv.Field(i).Interface(), lv.Field(i).Interface()
				if reflect.TypeOf(a) == reflect.TypeOf(b) && !reflect.DeepEqual(a, b) {
					t.Errorf("%s: %s is %v in kafka, %v in kafkalite", block, fv.Type().Field(i).Name, a, b)
				}
			}
		}
	}
}
