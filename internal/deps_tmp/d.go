package depstmp

import (
	_ "github.com/DataDog/sketches-go/ddsketch"
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/klauspost/compress/zstd"
	_ "github.com/nats-io/nats-server/v2/server"
	_ "github.com/nats-io/nats.go/jetstream"
	_ "gopkg.in/yaml.v3"
	_ "github.com/VictoriaMetrics/metrics"
)
