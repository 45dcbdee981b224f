package client_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/les-streams/les/client"
)

// TestFlushInterval: the background goroutine writes buffered lines every
// interval, on the fake clock of a synctest bubble, and stops on Close
// (synctest fails the test if it is left running; goleak checks again).
func TestFlushInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newAgent(t)
		c, err := client.New(a.opts(client.WithFlushInterval(100 * time.Millisecond))...)
		if err != nil {
			t.Fatal(err)
		}
		c.Count("tick.count", 1)
		c.Log(client.LevelInfo, "tick")

		time.Sleep(99 * time.Millisecond) // fake time
		synctest.Wait()
		if st := c.Stats().Total(); st.SentDatagrams != 0 {
			t.Fatalf("written before the interval: %+v", st)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if st := c.Stats(); st.Metrics.SentLines != 1 || st.Logs.SentLines != 1 {
			t.Fatalf("not written at the interval: %+v", st)
		}
		if d := readN(t, a.metrics, 1)[0]; string(d) != "tick.count:1|c\n" {
			t.Errorf("datagram %q", d)
		}

		// Nothing buffered: later ticks write nothing.
		time.Sleep(time.Second)
		synctest.Wait()
		if st := c.Stats().Total(); st.SentDatagrams != 2 {
			t.Errorf("empty ticks wrote datagrams: %+v", st)
		}

		c.Incr("tick.count")
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		if st := c.Stats().Metrics; st.SentLines != 2 {
			t.Errorf("second interval: %+v", st)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	})
}
