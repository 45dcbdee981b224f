//go:build !linux

package main

// stopWithGoRun: outside Linux there is no parent-death signal; run the
// binary (go build -o les ./cmd/les) where signals must reach les.
func stopWithGoRun() {}
