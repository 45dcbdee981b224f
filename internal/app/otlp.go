package app

import (
	"time"

	"github.com/les-streams/les/internal/format/otlp"
	"github.com/les-streams/les/internal/ingest"
	"github.com/les-streams/les/internal/ingest/otlpin"
)

// OTLP listeners (format otlp, transport http or grpc): the OpenTelemetry
// protocol on 4318 (HTTP) and 4317 (gRPC). They take the HTTP intake's
// token and limits (agent.http.token, max_body, max_concurrent); a
// listener's max_body overrides agent.http.max_body.

// otlpDeltas is the cumulative-to-delta state every OTLP listener of the
// process shares (a series may arrive over HTTP and gRPC alike).
func (a *App) otlpDeltas() *otlp.Deltas {
	a.otlpOnce.Do(func() {
		a.otlpState = otlp.NewDeltas(otlp.DeltasConfig{Since: time.Now().UnixNano()})
		st := a.otlpState
		a.reg.Gauge("les_otlp_cumulative_series", func() float64 { return float64(st.Stats().Series) })
		a.reg.Gauge("les_otlp_cumulative_baselines_total", func() float64 { return float64(st.Stats().Baselines) })
		a.reg.Gauge("les_otlp_cumulative_resets_total", func() float64 { return float64(st.Stats().Resets) })
		a.reg.Gauge("les_otlp_cumulative_forgotten_total", func() float64 { return float64(st.Stats().Forgotten) })
	})
	return a.otlpState
}

func bindOTLP(a *App, l ListenerConfig, b *ingest.Batcher) (runner, string, error) {
	hc := a.cfg.Agent.HTTP
	cfg := otlpin.Config{Address: l.Address, Token: hc.Token, MaxBody: hc.MaxBody, MaxConcurrent: hc.MaxConcurrent}
	if l.MaxBody > 0 {
		cfg.MaxBody = l.MaxBody
	}
	deltas := a.otlpDeltas()
	newDec := func() *otlp.Decoder { return otlp.NewDecoder(otlp.Options{DefaultSource: l.Source}, deltas) }
	in := ingest.NewIntake("otlp", l.Transport, b, a.reg)
	in.Gate = a.gate
	if l.Transport == "grpc" {
		s, err := otlpin.ListenGRPC(cfg, in, newDec, b, a.log)
		if err != nil {
			return nil, "", err
		}
		return s, s.Addr().String(), nil
	}
	s, err := otlpin.ListenHTTP(cfg, in, newDec, b, a.log)
	if err != nil {
		return nil, "", err
	}
	return s, s.Addr().String(), nil
}
