package consumer

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/aws/aws-lambda-go/events"
)

// Invoke implements lambda.Handler: it tells a Kafka event (a top-level
// eventSource of aws:kafka or SelfManagedKafka) from a Kinesis event (a
// Records array) and answers a Kinesis event with its
// KinesisEventResponse (JSON) and a Kafka event with null, or an error.
func (h *Handler) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	var probe struct {
		EventSource string `json:"eventSource"`
	}
	// Field names match case-insensitively in encoding/json, so probe
	// the Kafka-only top-level key before decoding either shape.
	if err := json.Unmarshal(payload, &probe); err != nil {
		return nil, fmt.Errorf("les-consumer: event is not a JSON object: %w", err)
	}
	if probe.EventSource == "aws:kafka" || strings.EqualFold(probe.EventSource, "SelfManagedKafka") {
		var ev events.KafkaEvent
		if err := json.Unmarshal(payload, &ev); err != nil {
			return nil, fmt.Errorf("les-consumer: kafka event: %w", err)
		}
		if err := h.HandleKafka(ctx, ev); err != nil {
			return nil, err
		}
		return []byte("null"), nil
	}
	var ev events.KinesisEvent
	if err := json.Unmarshal(payload, &ev); err != nil {
		return nil, fmt.Errorf("les-consumer: kinesis event: %w", err)
	}
	resp, err := h.HandleKinesis(ctx, ev)
	if err != nil {
		return nil, err
	}
	return json.Marshal(resp)
}
