package app

import (
	"slices"
	"testing"

	"github.com/les-streams/les/internal/lambda/extension"
)

// TestLambdaExtensionListeners: the Lambda extension keeps its own copy
// of the listener table (it must not link this package; ADR 0005). Each
// of its formats must be one of les up's with the same transports, and
// its default listeners must be les up's (for those formats).
func TestLambdaExtensionListeners(t *testing.T) {
	for name, tr := range extension.FormatTransports() {
		spec, ok := formats[name]
		if !ok {
			t.Errorf("extension format %s is not a les up format", name)
			continue
		}
		if !slices.Equal(spec.transports, tr) {
			t.Errorf("format %s: extension transports %v, les up %v", name, tr, spec.transports)
		}
	}
	var want []extension.ListenerConfig
	for _, l := range DefaultListeners() {
		if _, ok := extension.FormatTransports()[l.Format]; ok {
			want = append(want, extension.ListenerConfig{Format: l.Format, Transport: l.Transport, Address: l.Address})
		}
	}
	if got := extension.DefaultListeners(); !slices.Equal(got, want) {
		t.Errorf("extension default listeners\n%v\nles up's\n%v", got, want)
	}
}
