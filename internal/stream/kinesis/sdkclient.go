//go:build !kinesislite

package kinesis

import (
	"context"
	"fmt"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
)

// newClient builds a client from the standard AWS chain (environment,
// shared config and credentials files, SSO, container and instance roles).
// Loading the chain reads files and the environment only; credentials are
// resolved at the first call.
func (s *Stream) newClient(ctx context.Context) error {
	var opts []func(*awsconfig.LoadOptions) error
	if s.cfg.Region != "" {
		opts = append(opts, awsconfig.WithRegion(s.cfg.Region))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return fmt.Errorf("kinesis: aws config: %w", err)
	}
	// Keep the transport the chain configured (AWS_CA_BUNDLE and all) so
	// that Close can close its idle connections.
	if bc, ok := awsCfg.HTTPClient.(*awshttp.BuildableClient); ok {
		s.transport = bc.GetTransport()
		awsCfg.HTTPClient = &http.Client{Transport: s.transport}
	}
	s.api = kinesis.NewFromConfig(awsCfg, func(o *kinesis.Options) {
		if s.cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(s.cfg.Endpoint)
		}
	})
	return nil
}
