package file

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/sink"
	"github.com/les-streams/les/internal/sink/sinktest"
)

// sendAt sends record id read from pos of partition part.
func sendAt(t *testing.T, s *Sink, id, part, pos string) error {
	t.Helper()
	b, _ := sinktest.Batch()
	return s.Send(context.Background(), b, sink.Meta{RecordID: id, Partition: part, Pos: pos})
}

// runnerSink is a sink whose runner called Recover (as consumer.SinkRunner
// does before consuming), with 5 records written: r1..r5 from positions
// 1..5, odd ones of partition "a", even ones of "b".
func runnerSink(t *testing.T, path string, reg *selfmetric.Registry) *Sink {
	t.Helper()
	s, err := NewDeps(Config{Path: path}, sink.Deps{Name: "f", Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	s.pathEvery = 0
	if rw, err := s.Recover(); err != nil || rw != nil {
		t.Fatalf("Recover on a new file: %v %v", rw, err)
	}
	for i := 1; i <= 5; i++ {
		if err := sendAt(t, s, fmt.Sprintf("r%d", i), map[bool]string{true: "a", false: "b"}[i%2 == 1], fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// recordStart returns the offset of record id's first line.
func recordStart(t *testing.T, path, id string) int64 {
	t.Helper()
	data, _ := os.ReadFile(path)
	i := bytes.Index(data, []byte(`"record":"`+id+`"`))
	if i < 0 {
		t.Fatalf("record %s not in the file", id)
	}
	return int64(bytes.LastIndexByte(data[:i], '\n') + 1)
}

func damagedSignalled(s *Sink) bool {
	select {
	case <-s.Damaged():
		return true
	default:
		return false
	}
}

// TestDamageWhileRunning: each kind of damage made under a running sink
// is found by the next Send, repaired, counted, signalled, and answered
// with ErrRewind until Recover, which names the first record cut per
// partition; the re-delivered records then complete the file.
func TestDamageWhileRunning(t *testing.T) {
	for name, tc := range map[string]struct {
		damage func(t *testing.T, path string)
		rewind map[string]string
	}{
		"cut inside r3": {func(t *testing.T, path string) {
			if err := os.Truncate(path, recordStart(t, path, "r3")+100); err != nil {
				t.Fatal(err)
			}
		}, map[string]string{"a": "3", "b": "4"}},
		"cut at the end of r4 (a record boundary)": {func(t *testing.T, path string) {
			if err := os.Truncate(path, recordStart(t, path, "r5")); err != nil {
				t.Fatal(err)
			}
		}, map[string]string{"a": "5"}},
		"last bytes overwritten": {func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			st, _ := f.Stat()
			if _, err := f.WriteAt([]byte("garbage"), st.Size()-20); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}, map[string]string{"a": "5"}},
		"deleted": {func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}, map[string]string{"a": "5"}},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.ndjson")
			reg := selfmetric.New()
			s := runnerSink(t, path, reg)
			defer s.Close()
			tc.damage(t, path)
			err := sendAt(t, s, "r6", "b", "6")
			if !errors.Is(err, ErrRewind) {
				t.Fatalf("Send after the damage: %v, want ErrRewind", err)
			}
			if !damagedSignalled(s) {
				t.Error("Damaged not signalled")
			}
			if err := sendAt(t, s, "r6", "b", "6"); !errors.Is(err, ErrRewind) {
				t.Fatalf("second Send before Recover: %v, want ErrRewind", err)
			}
			rw, err := s.Recover()
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.rewind, rw); d != "" {
				t.Fatalf("rewind -want +got\n%s", d)
			}
			if name != "deleted" {
				if got := reg.Counter("les_sink_file_repairs_total", "sink", "f").Get(); got != 1 {
					t.Errorf("les_sink_file_repairs_total = %d, want 1", got)
				}
			}
			// The stream re-delivers from the rewind: records before it
			// are skipped by id, the cut ones written again.
			from := 6
			for _, pos := range rw {
				var p int
				fmt.Sscan(pos, &p)
				from = min(from, p)
			}
			for i := from; i <= 6; i++ {
				if err := sendAt(t, s, fmt.Sprintf("r%d", i), map[bool]string{true: "a", false: "b"}[i%2 == 1], fmt.Sprint(i)); err != nil {
					t.Fatal(err)
				}
			}
			s.Rewound("a", "b")
			if _, err := os.Stat(path + RewindSuffix); !os.IsNotExist(err) {
				t.Errorf("pending rewind kept after Rewound: %v", err)
			}
			want := map[string]int{}
			for i := 1; i <= 6; i++ {
				want[fmt.Sprintf("r%d", i)] = perRecord
			}
			if name == "deleted" {
				want = map[string]int{"r5": perRecord, "r6": perRecord} // r1..r4 went with the deleted file
			}
			if d := cmp.Diff(want, recordCounts(t, path)); d != "" {
				t.Errorf("records in the file -want +got\n%s", d)
			}
		})
	}
}

// TestRotationIsNotDamage: a file truncated to zero (logrotate
// copytruncate) or renamed away is written afresh, with no rewind.
func TestRotationIsNotDamage(t *testing.T) {
	for name, rotate := range map[string]func(path string) error{
		"copytruncate": func(path string) error { return os.Truncate(path, 0) },
		"renamed":      func(path string) error { return os.Rename(path, path+".1") },
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.ndjson")
			reg := selfmetric.New()
			s := runnerSink(t, path, reg)
			defer s.Close()
			if err := rotate(path); err != nil {
				t.Fatal(err)
			}
			if err := sendAt(t, s, "r6", "b", "6"); err != nil {
				t.Fatal(err)
			}
			if damagedSignalled(s) || reg.Counter("les_sink_file_repairs_total", "sink", "f").Get() != 0 {
				t.Error("rotation taken as damage")
			}
			if d := cmp.Diff(map[string]int{"r6": perRecord}, recordCounts(t, path)); d != "" {
				t.Errorf("-want +got\n%s", d)
			}
		})
	}
}

// TestCutWhileStoppedRewindsToFirstCut: records cut while les was
// stopped (the file truncated at a record boundary, which looks intact)
// are found from the journal on open: the rewind names the first record
// cut in each partition, and it is kept across restarts until Rewound.
func TestCutWhileStoppedRewindsToFirstCut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.ndjson")
	s := runnerSink(t, path, nil)
	s.Close()
	if err := os.Truncate(path, recordStart(t, path, "r2")); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a": "3", "b": "2"}
	for range 2 { // a restart before the records came again keeps the rewind
		s, err := NewDeps(Config{Path: path}, sink.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		rw, err := s.Recover()
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, rw); d != "" {
			t.Fatalf("rewind -want +got\n%s", d)
		}
		s.Close()
	}
}

// TestJournalBounded: the journal keeps at most twice JournalRecords
// entries; a cut older than what it holds rewinds from the oldest known.
func TestJournalBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.ndjson")
	s, _ := NewDeps(Config{Path: path, Sync: "none"}, sink.Deps{})
	s.keepRecs = 4
	for i := 1; i <= 20; i++ {
		if err := sendAt(t, s, fmt.Sprintf("r%d", i), "p", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	data, _ := os.ReadFile(path + PosSuffix)
	if n := bytes.Count(data, []byte{'\n'}); n < 4 || n > 8 {
		t.Fatalf("journal holds %d entries, want 4..8", n)
	}
	if err := os.Truncate(path, recordStart(t, path, "r3")); err != nil {
		t.Fatal(err)
	}
	s, _ = NewDeps(Config{Path: path}, sink.Deps{})
	s.keepRecs = 4
	rw, err := s.Recover()
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if len(rw) != 1 || comparePos(rw["p"], "12") < 0 || comparePos(rw["p"], "17") > 0 {
		t.Fatalf("rewind %v, want the oldest journaled record of p (13..17)", rw)
	}
}

// TestSendAllocsWithPosition: the check and the journal add no
// allocation to a Send read from a stream position.
func TestSendAllocsWithPosition(t *testing.T) {
	s := newSink(t, Config{Path: filepath.Join(t.TempDir(), "out.ndjson"), Sync: "none"})
	s.pathEvery = 1 << 62
	defer s.Close()
	b, _ := sinktest.Batch()
	m := sink.Meta{Partition: "in.metrics/3", Pos: "123456"}
	if err := s.Send(context.Background(), b, m); err != nil {
		t.Fatal(err)
	}
	n := testing.AllocsPerRun(50, func() {
		_ = s.Send(context.Background(), b, m)
	})
	if n != 0 {
		t.Errorf("Send allocates %v times", n)
	}
}
