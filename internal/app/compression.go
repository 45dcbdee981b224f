package app

// autoCompression resolves agent.batch.compression: "auto" (the default)
// is s2 on the embedded stream, whose records stay on this machine and
// where zstd cost les a fifth of its CPU, and zstd on every remote stream,
// where bytes cost bandwidth and money. Any other value is kept as written.
func autoCompression(setting, streamKind string) string {
	if setting != "" && setting != "auto" {
		return setting
	}
	if streamKind == "" || streamKind == "embedded" {
		return "s2"
	}
	return "zstd"
}
