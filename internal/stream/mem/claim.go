package mem

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/les-streams/les/internal/stream"
)

// ErrFenced is returned by a StateStore's Save after its partition was
// taken from a crashed member (Stream.Crash).
var ErrFenced = errors.New("mem: partition no longer claimed by this member")

// Claim implements stream.Claimer. Every Stream of a Store calling Claim
// with the same group is one member; the members in the order they
// joined own the logical partitions round robin (partition p belongs to
// member p mod n). A member joining or leaving moves partitions at once:
// a revocation cancels the run and waits for it to return before the next
// owner's run starts. Crash removes a member without waiting. Checkpoints
// are kept in the Store, so they outlive the member.
func (s *Stream) Claim(ctx context.Context, group string, run func(ctx context.Context, part int, st stream.StateStore) error) error {
	if s.isClosed() {
		return stream.ErrClosed
	}
	g := s.st.group(group, s.cfg.Partitions)
	m := &member{s: s, run: run, runs: map[int]*claimRun{}, errc: make(chan error, 1), gone: make(chan struct{})}
	g.mu.Lock()
	g.members = append(g.members, m)
	g.mu.Unlock()
	s.mu.Lock()
	s.claims = append(s.claims, claimOf{g, m})
	s.mu.Unlock()
	g.rebalance()
	var err error
	select {
	case <-ctx.Done():
	case err = <-m.errc:
	case <-m.gone:
		return nil
	}
	g.leave(m, true)
	return err
}

// Crash removes this Stream from every group it claims in as a killed
// process leaves: its state stores refuse Saves from now on, its runs'
// contexts are cancelled, and its partitions move to the other members
// without waiting for those runs. Publish and Consume fail from then on.
func (s *Stream) Crash() {
	s.mu.Lock()
	cs := s.claims
	s.claims = nil
	s.mu.Unlock()
	s.Close()
	for _, c := range cs {
		c.g.leave(c.m, false)
	}
}

// Owners returns, for group, the member index (in join order among the
// members now present) owning each claimed partition that is running.
func (st *Store) Owners(group string) map[int]int {
	st.mu.Lock()
	g := st.groups[group]
	st.mu.Unlock()
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	out := map[int]int{}
	for i, m := range g.members {
		for p := range m.runs {
			out[p] = i
		}
	}
	return out
}

// Checkpoints returns how many checkpoints were saved for partition part
// of group.
func (st *Store) Checkpoints(group string, part int) int {
	st.mu.Lock()
	g := st.groups[group]
	st.mu.Unlock()
	if g == nil {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.ckpts[part])
}

type claimOf struct {
	g *claimGroup
	m *member
}

// claimGroup is one group's members and checkpoints. rb serializes
// rebalances; mu guards the fields.
type claimGroup struct {
	parts   int
	rb      sync.Mutex
	mu      sync.Mutex
	members []*member
	ckpts   map[int][][]byte
}

type member struct {
	s    *Stream
	run  func(ctx context.Context, part int, st stream.StateStore) error
	runs map[int]*claimRun // g.mu
	errc chan error
	gone chan struct{} // closed when crashed
}

type claimRun struct {
	cancel context.CancelFunc
	done   chan struct{}
	store  *stateStore
}

func (st *Store) group(name string, parts int) *claimGroup {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.groups == nil {
		st.groups = map[string]*claimGroup{}
	}
	g := st.groups[name]
	if g == nil {
		g = &claimGroup{parts: parts, ckpts: map[int][][]byte{}}
		st.groups[name] = g
	}
	return g
}

// leave removes m; graceful waits for its runs (final checkpoints) first.
func (g *claimGroup) leave(m *member, graceful bool) {
	g.rb.Lock()
	g.mu.Lock()
	i := slices.Index(g.members, m)
	if i < 0 {
		g.mu.Unlock()
		g.rb.Unlock()
		return
	}
	g.members = slices.Delete(g.members, i, i+1)
	runs := m.runs
	m.runs = map[int]*claimRun{}
	g.mu.Unlock()
	for _, r := range runs {
		if !graceful {
			r.store.fence()
		}
		r.cancel()
	}
	if graceful {
		for _, r := range runs {
			<-r.done
		}
	} else {
		close(m.gone)
	}
	g.rb.Unlock()
	g.rebalance()
}

// rebalance moves every partition to its owner under the current members:
// revoke (cancel, wait), then start.
func (g *claimGroup) rebalance() {
	g.rb.Lock()
	defer g.rb.Unlock()
	g.mu.Lock()
	want := map[int]*member{}
	if n := len(g.members); n > 0 {
		for p := range g.parts {
			want[p] = g.members[p%n]
		}
	}
	var revoked []*claimRun
	for _, m := range g.members {
		for p, r := range m.runs {
			if want[p] != m {
				delete(m.runs, p)
				revoked = append(revoked, r)
			}
		}
	}
	g.mu.Unlock()
	for _, r := range revoked {
		r.cancel()
		<-r.done
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for p := range g.parts {
		m := want[p]
		if m == nil || m.runs[p] != nil {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		r := &claimRun{cancel: cancel, done: make(chan struct{}), store: &stateStore{g: g, part: p}}
		m.runs[p] = r
		go func() {
			defer close(r.done)
			err := m.run(ctx, p, r.store)
			if err == nil && ctx.Err() == nil {
				err = errors.New("mem: claim run returned while its partition was assigned")
			}
			if err != nil && ctx.Err() == nil {
				select {
				case m.errc <- err:
				default:
				}
			}
		}()
	}
}

// stateStore is a claimed partition's checkpoints in the group.
type stateStore struct {
	g      *claimGroup
	part   int
	mu     sync.Mutex
	fenced bool
}

func (s *stateStore) fence() {
	s.mu.Lock()
	s.fenced = true
	s.mu.Unlock()
}

// Load implements stream.StateStore.
func (s *stateStore) Load(context.Context) (newest, previous []byte, err error) {
	s.g.mu.Lock()
	defer s.g.mu.Unlock()
	cs := s.g.ckpts[s.part]
	if n := len(cs); n > 0 {
		newest = slices.Clone(cs[n-1])
		if n > 1 {
			previous = slices.Clone(cs[n-2])
		}
	}
	return newest, previous, nil
}

// Save implements stream.StateStore.
func (s *stateStore) Save(ctx context.Context, b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fenced {
		return ErrFenced
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.g.mu.Lock()
	defer s.g.mu.Unlock()
	s.g.ckpts[s.part] = append(s.g.ckpts[s.part], slices.Clone(b))
	return nil
}
