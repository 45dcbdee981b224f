//go:build kinesislite

package kinesis

import "context"

// newClient, in a build with the kinesislite tag (the Lambda extension),
// is the Lite client: PutRecords only, credentials and region from the
// environment. The SDK's config chain and Kinesis client are not linked,
// which keeps the extension binary within its size budget (ADR 0005).
func (s *Stream) newClient(context.Context) error {
	l, err := NewLite(LiteConfig{Region: s.cfg.Region, Endpoint: s.cfg.Endpoint, Timeout: s.cfg.PutTimeout})
	if err != nil {
		return err
	}
	s.api = l
	s.transport = l.Transport()
	return nil
}
