// Command function is the Lambda function of the emulator tests in
// test/lambda: built with aws-lambda-go for the provided runtime
// (bootstrap), it emits to the les extension on loopback, as a user's
// function would, using only the standard library's sockets: a StatsD
// counter and timer (UDP 8125), a Wavefront point (TCP 2878) and an EMF
// document (TCP 25888), with values from the event. An event with
// sleep_ms sleeps (to run into the function timeout); with udp set, the
// Wavefront point and the EMF document go as UDP datagrams to the same
// ports instead (a function whose emission costs the same whether or not
// anything listens: for the latency measurement); with quiet set it emits
// only the two StatsD datagrams; with silent set, nothing at all. With
// stamp set it answers "ok <start> <end>" instead of "ok": the wall clock
// (Unix ns) when the handler started and when it returned, so that the
// latency measurement can split the caller's time into before, in and
// after the handler (the runtime posting the response and the emulator
// answering the caller).
package main

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
)

// Event is the test's invocation payload.
type Event struct {
	N       int  `json:"n"`
	SleepMs int  `json:"sleep_ms"`
	UDP     bool `json:"udp"`
	Quiet   bool `json:"quiet"`
	Silent  bool `json:"silent"`
	Stamp   bool `json:"stamp"`
}

func handle(ctx context.Context, ev Event) (string, error) {
	if ev.Stamp {
		start := time.Now().UnixNano()
		ans, err := emit(ev)
		return fmt.Sprintf("%s %d %d", ans, start, time.Now().UnixNano()), err
	}
	return emit(ev)
}

func emit(ev Event) (string, error) {
	if ev.SleepMs > 0 {
		time.Sleep(time.Duration(ev.SleepMs) * time.Millisecond)
	}
	if ev.Silent {
		return "ok", nil
	}
	if u, err := net.Dial("udp", "127.0.0.1:8125"); err == nil {
		fmt.Fprintf(u, "rie.count:1|c|#fn:test")
		fmt.Fprintf(u, "rie.latency:%d|ms", ev.N)
		u.Close()
	}
	if ev.Quiet {
		return "ok", nil
	}
	network := "tcp"
	if ev.UDP {
		network = "udp"
	}
	if c, err := net.DialTimeout(network, "127.0.0.1:2878", time.Second); err == nil {
		fmt.Fprintf(c, "rie.wf %d source=rie-fn\n", ev.N)
		c.Close()
	}
	if c, err := net.DialTimeout(network, "127.0.0.1:25888", time.Second); err == nil {
		fmt.Fprintf(c, `{"_aws":{"Timestamp":%d,"LogGroupName":"g","CloudWatchMetrics":[{"Namespace":"Rie","Dimensions":[["Op"]],"Metrics":[{"Name":"RieEmf","Unit":"Count"}]}]},"Op":"x","RieEmf":%d}`+"\n",
			time.Now().UnixMilli(), 2*ev.N)
		c.Close()
	}
	fmt.Printf("handled n=%d\n", ev.N)
	return "ok", nil
}

func main() { lambda.Start(handle) }
