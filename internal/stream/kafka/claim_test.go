package kafka

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/les-streams/les/internal/selfmetric"
	"github.com/les-streams/les/internal/stream"
)

// claimStore opens a StateStore of partition part of group's checkpoint
// topic on s, as a claimed run gets it.
func claimStore(t *testing.T, s *Stream, group string, part int32) *stateStore {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	topic := s.claimTopic(group)
	if err := s.ensureClaimTopic(ctx, topic); err != nil {
		t.Fatal(err)
	}
	return s.newStateStore(topic, part)
}

// ckptBytes is a checkpoint of n bytes whose content names tag.
func ckptBytes(tag string, n int) []byte {
	b := bytes.Repeat([]byte{'.'}, n)
	copy(b, tag)
	return b
}

func mustLoad(t *testing.T, st *stateStore) (newest, previous []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, p, err := st.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return n, p
}

func mustSave(t *testing.T, st *stateStore, b []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := st.Save(ctx, b); err != nil {
		t.Fatal(err)
	}
}

func tagOf(b []byte) string {
	if b == nil {
		return "<none>"
	}
	s, _, _ := strings.Cut(string(b), ".")
	return s
}

// TestClaimStore: checkpoints larger than a record are cut into chunks
// and put together again; the newest complete checkpoint wins over a
// newer incomplete one (a writer killed mid-save); a zombie's checkpoint
// (an owner older than one already in the partition) is ignored; saves
// trim the partition to the last checkpoints, so a takeover reads a few.
func TestClaimStore(t *testing.T) {
	c := newCluster(t)
	reg := selfmetric.New()
	s, err := Open(context.Background(), Config{Brokers: c.ListenAddrs(), MaxRecordBytes: 4096}, 2, Deps{Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })

	// A first owner: nothing yet, then two chunked checkpoints.
	a := claimStore(t, s, "g", 1)
	if n, p := mustLoad(t, a); n != nil || p != nil {
		t.Fatalf("empty partition: %q, %q", tagOf(n), tagOf(p))
	}
	mustSave(t, a, ckptBytes("a1", 10000)) // 3 chunks
	mustSave(t, a, ckptBytes("a2", 20000)) // 5 chunks

	// The next owner reads both back, byte for byte.
	b := claimStore(t, s, "g", 1)
	n, p := mustLoad(t, b)
	if !bytes.Equal(n, ckptBytes("a2", 20000)) || !bytes.Equal(p, ckptBytes("a1", 10000)) {
		t.Fatalf("loaded %q (%d bytes) and %q (%d bytes), want a2 (20000) and a1 (10000)", tagOf(n), len(n), tagOf(p), len(p))
	}
	if b.epoch <= a.epoch {
		t.Fatalf("next owner's epoch %d, first owner's %d: want it newer", b.epoch, a.epoch)
	}
	mustSave(t, b, ckptBytes("b1", 9000))

	// b is killed in the middle of its next save: only 2 of 3 chunks.
	b.seq++
	half := ckptBytes("b2", 9000)
	size := int(s.cfg.MaxRecordBytes) - chunkHeader
	for i := range 2 {
		v := append([]byte(chunkMagic), make([]byte, chunkHeader-len(chunkMagic))...)
		putHeader(v, b.epoch, b.writer, b.seq, uint32(i), 3)
		v = append(v, half[i*size:(i+1)*size]...)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := s.cl.ProduceSync(ctx, &kgo.Record{Topic: b.topic, Partition: 1, Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	// And a zombie (a, the older owner, still running) saves after it.
	mustSave(t, a, ckptBytes("a3", 5000))

	c2 := claimStore(t, s, "g", 1)
	n, p = mustLoad(t, c2)
	if tagOf(n) != "b1" || tagOf(p) != "a2" {
		t.Fatalf("loaded %q and %q, want b1 (the newest complete of the newest owner) and a2", tagOf(n), tagOf(p))
	}
	// Partition 0 is another logical partition: untouched.
	if n, _ := mustLoad(t, claimStore(t, s, "g", 0)); n != nil {
		t.Fatalf("partition 0 holds %q", tagOf(n))
	}

	// Many saves: the log is trimmed, the last two stay.
	for i := range 3 * trimEvery {
		mustSave(t, c2, ckptBytes(fmt.Sprintf("c%d", i), 6000))
	}
	d := claimStore(t, s, "g", 1)
	n, p = mustLoad(t, d)
	want := fmt.Sprintf("c%d", 3*trimEvery-1)
	if tagOf(n) != want || tagOf(p) != fmt.Sprintf("c%d", 3*trimEvery-2) {
		t.Fatalf("after trimming loaded %q and %q, want %s and the one before", tagOf(n), tagOf(p), want)
	}
	if d.logStart == 0 {
		t.Fatal("the checkpoint partition was never trimmed")
	}
	if got := kafkaCounter(reg, "les_stream_checkpoint_trims_total"); got < 2 {
		t.Fatalf("%v trims counted", got)
	}
	// What a takeover reads is bounded by trimEvery+1 checkpoints of 2
	// chunks, not by the 3·trimEvery+5 written.
	if got, limit := kafkaCounter(reg, "les_stream_checkpoint_loaded_bytes_total"), 0.0; got == limit {
		t.Fatal("no load bytes counted")
	}
	t.Logf("log start %d; newest at %d, previous at %d", d.logStart, d.newestAt, d.prevAt)
	if d.newestAt-d.logStart > int64(2*(trimEvery+2)) {
		t.Fatalf("a takeover read from offset %d to %d: more than %d checkpoints", d.logStart, d.newestAt, trimEvery+2)
	}
}

// TestClaimStoreSaveAfterAbandoned: a Save that ends on its ctx leaves its
// chunks in the shared producer client, and franz-go fails every record
// buffered for a partition once the first one's context is done: the
// chunks of the next Save of that partition with them, though its ctx is
// live. That next Save is the final checkpoint of a revoked partition
// whose run was cancelled in the middle of a periodic one: it failed
// ("context canceled") and the next owner started from the periodic
// checkpoint before it (TestClaimMembers, under load). It sends its
// chunks again and succeeds.
func TestClaimStoreSaveAfterAbandoned(t *testing.T) {
	c := newCluster(t)
	reg := selfmetric.New()
	s, err := Open(context.Background(), Config{Brokers: c.ListenAddrs(), MaxRecordBytes: 4096}, 2, Deps{Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	// The live Save below is 3 chunks; when the client is handed its
	// last, the first two are buffered.
	lastChunk := make(chan struct{})
	var once sync.Once
	hookProducer(t, s, func(r *kgo.Record) {
		if len(r.Value) < chunkHeader || r.Partition != 0 {
			return
		}
		if h := r.Value[len(chunkMagic):]; binary.LittleEndian.Uint32(h[28:]) == 3 && binary.LittleEndian.Uint32(h[24:]) == 2 {
			once.Do(func() { close(lastChunk) })
		}
	})
	st0, st1 := claimStore(t, s, "g", 0), claimStore(t, s, "g", 1)
	mustLoad(t, st0)
	mustLoad(t, st1)

	// The client's first produce request, held: what follows for
	// partition 0 stays buffered.
	held, release := holdProduce(c)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	heldErr := make(chan error, 1)
	go func() { heldErr <- st1.Save(ctx, ckptBytes("held", 100)) }()
	<-held // and the topic's partitions known

	// A Save whose ctx ends while its chunk is buffered (a run cancelled
	// mid-save), then one whose ctx is live (the final checkpoint).
	gone, stop := context.WithCancel(ctx)
	stop()
	if err := st0.Save(gone, ckptBytes("abandoned", 100)); !errors.Is(err, context.Canceled) {
		t.Fatalf("save with a cancelled ctx: %v", err)
	}
	liveErr := make(chan error, 1)
	go func() { liveErr <- st0.Save(ctx, ckptBytes("live", 10000)) }()
	<-lastChunk
	release()
	if err := <-liveErr; err != nil {
		t.Fatalf("a save whose ctx is live, after one abandoned: %v", err)
	}
	if err := <-heldErr; err != nil {
		t.Fatal(err)
	}
	n, _ := mustLoad(t, claimStore(t, s, "g", 0))
	if !bytes.Equal(n, ckptBytes("live", 10000)) {
		t.Fatalf("next owner loaded %q (%d bytes), want the live save's checkpoint", tagOf(n), len(n))
	}
}

func putHeader(v []byte, epoch, writer, seq uint64, idx, count uint32) {
	h := v[len(chunkMagic):]
	le := func(b []byte, x uint64, n int) {
		for i := range n {
			b[i] = byte(x >> (8 * i))
		}
	}
	le(h, epoch, 8)
	le(h[8:], writer, 8)
	le(h[16:], seq, 8)
	le(h[24:], uint64(idx), 4)
	le(h[28:], uint64(count), 4)
}

// claimLog records what each member's runs did.
type claimLog struct {
	mu     sync.Mutex
	owner  map[int]string    // partition → member running it now
	loaded map[string]string // "member/partition" → tag of the checkpoint its run loaded last
	saved  map[string]string // "member/partition" → tag of the checkpoint its run saved last
	// finalErr is "member/partition" → the error of its run's final
	// save, when it failed.
	finalErr map[string]error
	// overlaps are loads of a partition whose run by another member had
	// not ended yet: two owners at once.
	overlaps []string
	change   chan struct{}
}

func newClaimLog() *claimLog {
	return &claimLog{owner: map[int]string{}, loaded: map[string]string{}, saved: map[string]string{}, finalErr: map[string]error{}, change: make(chan struct{})}
}

func (l *claimLog) changed() {
	close(l.change)
	l.change = make(chan struct{})
}

// run is a claimed run of member name: it loads, then saves a checkpoint
// "<name>-<part>-<n>" every 20ms, and a final one when revoked.
func (l *claimLog) run(t *testing.T, name string) func(ctx context.Context, part int, st stream.StateStore) error {
	return func(ctx context.Context, part int, st stream.StateStore) error {
		newest, _, err := st.Load(ctx)
		if err != nil {
			return nil // revoked while loading
		}
		l.mu.Lock()
		if prev, ok := l.owner[part]; ok && prev != name {
			l.overlaps = append(l.overlaps, fmt.Sprintf("%s loaded partition %d (%q) while %s still ran it", name, part, tagOf(newest), prev))
		}
		l.owner[part] = name
		l.loaded[fmt.Sprintf("%s/%d", name, part)] = tagOf(newest)
		l.changed()
		l.mu.Unlock()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-ctx.Done():
				fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				defer cancel()
				err := st.Save(fctx, []byte(fmt.Sprintf("%s-%d-final.", name, part)))
				l.mu.Lock()
				if err != nil {
					l.finalErr[fmt.Sprintf("%s/%d", name, part)] = err
				}
				if l.owner[part] == name {
					delete(l.owner, part)
				}
				l.changed()
				l.mu.Unlock()
				return nil
			case <-tick.C:
				tag := fmt.Sprintf("%s-%d-%d", name, part, n)
				if err := st.Save(ctx, []byte(tag+".")); err != nil {
					if ctx.Err() == nil {
						t.Logf("%s: save %d: %v", name, part, err)
					}
					continue
				}
				l.mu.Lock()
				l.saved[fmt.Sprintf("%s/%d", name, part)] = tag
				l.changed()
				l.mu.Unlock()
			}
		}
	}
}

// waitFor waits until cond holds over the log (checked on each change).
func (l *claimLog) waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for {
		l.mu.Lock()
		ok, ch := cond(), l.change
		l.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			l.mu.Lock()
			defer l.mu.Unlock()
			t.Fatalf("%s: never happened; owners %v, loaded %v", what, l.owner, l.loaded)
		}
	}
}

// TestClaimMembers: two members claim the four partitions of one group
// and split them; a clean stop hands a member's partitions to the other
// with its final checkpoints; a member whose connections are cut (a
// killed process: no LeaveGroup, no final checkpoint) loses its
// partitions to the other after the session timeout, which resumes from
// the last checkpoints the killed one saved.
func TestClaimMembers(t *testing.T) {
	const parts = 4
	g := newGroupCluster(t)
	// A clean handoff must not depend on the machine's speed: should a
	// rebalance begin while a revocation (its final checkpoints) runs, a
	// member that has not rejoined within the rebalance timeout is
	// dropped and its partitions move without it. (The final checkpoints
	// CI saw missed under load were not that but a save failed with an
	// abandoned one: TestClaimStoreSaveAfterAbandoned.)
	g.rebalance = 15 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l := newClaimLog()
	var wg sync.WaitGroup
	defer wg.Wait()
	claim := func(ctx context.Context, s *Stream, name string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Claim(ctx, "rollup", l.run(t, name)); err != nil {
				t.Errorf("claim %s: %v", name, err)
			}
		}()
	}
	count := func(name string) int {
		n := 0
		for _, o := range l.owner {
			if o == name {
				n++
			}
		}
		return n
	}

	a := g.open("a", parts)
	actx, stopA := context.WithCancel(ctx)
	defer stopA()
	claim(actx, a, "a")
	l.waitFor(ctx, t, "a owns all", func() bool { return count("a") == parts })

	// b joins: the partitions split two and two, and each one b takes
	// starts from a's final checkpoint of it.
	bPlug := &plug{}
	b := g.open("b", parts, kgo.Dialer(bPlug.dial))
	claim(ctx, b, "b")
	l.waitFor(ctx, t, "a and b own two each", func() bool { return count("a") == 2 && count("b") == 2 })
	l.mu.Lock()
	if len(l.overlaps) > 0 {
		t.Errorf("a partition had two owners during a clean handoff: %v", l.overlaps)
	}
	for p, o := range l.owner {
		if o != "b" {
			continue
		}
		// b starts from a's final checkpoint: a's run of it had ended
		// (no overlap, above) and its final save succeeded.
		if err := l.finalErr[fmt.Sprintf("a/%d", p)]; err != nil {
			t.Errorf("a's final save of partition %d in a clean handoff: %v", p, err)
		}
		if got, want := l.loaded[fmt.Sprintf("b/%d", p)], fmt.Sprintf("a-%d-final", p); got != want {
			t.Errorf("b's run of partition %d loaded %q, want a's final checkpoint %q", p, got, want)
		}
	}
	l.mu.Unlock()

	// b is killed: its partitions come to a after the session timeout,
	// each from a checkpoint b saved (not a final one: b never wrote it).
	l.mu.Lock()
	var bParts []int
	for p, o := range l.owner {
		if o == "b" {
			bParts = append(bParts, p)
		}
	}
	l.mu.Unlock()
	// b has saved a checkpoint of each of them (else a resumes from its
	// own final ones, rightly, and the check below cannot tell).
	l.waitFor(ctx, t, "b saved each of its partitions", func() bool {
		for _, p := range bParts {
			if l.saved[fmt.Sprintf("b/%d", p)] == "" {
				return false
			}
		}
		return true
	})
	killed := time.Now()
	bPlug.pull()
	l.waitFor(ctx, t, "a owns all again", func() bool { return count("a") == parts })
	t.Logf("a took b's partitions %v over %v after b was killed", bParts, time.Since(killed).Round(10*time.Millisecond))
	l.mu.Lock()
	for _, p := range bParts {
		got := l.loaded[fmt.Sprintf("a/%d", p)]
		if !strings.HasPrefix(got, fmt.Sprintf("b-%d-", p)) || strings.HasSuffix(got, "final") {
			t.Errorf("a resumed partition %d from %q, want one of b's periodic checkpoints", p, got)
		}
	}
	l.mu.Unlock()
	stopA()
	b.Close() // its runs (partitions lost, saves failing) end with the stream
}
