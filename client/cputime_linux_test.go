package client_test

import (
	"runtime"
	"syscall"
	"testing"
	"unsafe"
)

// cpuPerOp pins the benchmark goroutine to its thread and, when the
// returned func runs after the loop, reports that thread's CPU time per
// op (CLOCK_THREAD_CPUTIME_ID: user and system time, including its
// write(2) calls). Unlike ns/op it does not count time other processes
// hold the CPU on a shared machine, nor the draining goroutine's reads.
func cpuPerOp(b *testing.B) func() {
	runtime.LockOSThread()
	start := threadCPU()
	return func() {
		d := threadCPU() - start
		runtime.UnlockOSThread()
		b.ReportMetric(float64(d)/float64(b.N), "cpu-ns/op")
	}
}

func threadCPU() int64 {
	const clockThreadCPUTimeID = 3
	var ts syscall.Timespec
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0)
	return ts.Nano()
}
