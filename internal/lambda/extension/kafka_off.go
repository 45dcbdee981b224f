//go:build !les_kafka

package extension

import "errors"

// addKafka, without the les_kafka build tag, offers kafka only to say how
// to get it: franz-go would take the binary past its 10 MB budget (ADR
// 0005).
func addKafka(m map[string]backend) {
	m["kafka"] = backend{validate: func(*StreamConfig) error {
		return errors.New("stream.kind kafka: this build of the extension has no Kafka client (it would add 3.6 MB, past the 10 MB budget); build the layer with LES_LAYER_KAFKA=1 scripts/layer.sh, or publish to a central les over https")
	}}
}
