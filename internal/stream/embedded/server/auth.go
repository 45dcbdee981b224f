package server

import (
	"github.com/les-streams/les/internal/stream/embedded"
)

// authToken is the token the server requires of its clients: cfg.Token
// when set, else with auth creds (the default) the one kept in
// <dataDir>/stream.creds (created at the first start), else none.
func authToken(cfg embedded.Config, dataDir string) (string, error) {
	if cfg.Token != "" || cfg.Auth == "none" || dataDir == "" {
		return cfg.Token, nil
	}
	return embedded.EnsureCreds(dataDir)
}
