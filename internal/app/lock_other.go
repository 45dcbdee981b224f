//go:build !unix

package app

// lockDataDir does not lock outside Unix (the agent-only build for
// Windows): two processes on one data_dir there are not detected.
func lockDataDir(dir string) (release func(), err error) { return func() {}, nil }
