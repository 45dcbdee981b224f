package main

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that the commands run in-process (tail, up) leave no
// goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
