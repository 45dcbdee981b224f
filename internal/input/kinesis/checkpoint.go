package kinesis

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// checkpointVersion is the version of the checkpoint file format.
const checkpointVersion = 1

// checkpointFile is the JSON document of a checkpoint file:
//
//	{"version":1,"shards":{"shardId-000000000000":{"seq":"4959…"},
//	                       "shardId-000000000001":{"closed":true}}}
//
// seq is the sequence number of the last record whose logs were published;
// closed marks a shard read to its end (it is never read again).
type checkpointFile struct {
	Version int                        `json:"version"`
	Shards  map[string]shardCheckpoint `json:"shards"`
}

type shardCheckpoint struct {
	Seq    string `json:"seq,omitempty"`
	Closed bool   `json:"closed,omitempty"`
}

// checkpoints is the checkpoint file of one poller, shared by its shard
// readers. Every change rewrites the file atomically (temporary file,
// fsync, rename, fsync of the directory).
type checkpoints struct {
	path string

	mu     sync.Mutex
	shards map[string]shardCheckpoint
}

func (c *checkpoints) load() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.shards = map[string]shardCheckpoint{}
	b, err := os.ReadFile(c.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("kinesis: checkpoint: %w", err)
	}
	var f checkpointFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("kinesis: checkpoint %s: %w", c.path, err)
	}
	if f.Version != checkpointVersion {
		return fmt.Errorf("kinesis: checkpoint %s: unknown version %d", c.path, f.Version)
	}
	for k, v := range f.Shards {
		c.shards[k] = v
	}
	return nil
}

func (c *checkpoints) seq(shard string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.shards[shard].Seq
}

func (c *checkpoints) closed(shard string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.shards[shard].Closed
}

// set records seq (when not empty) and closed for shard and writes the file.
func (c *checkpoints) set(shard, seq string, closed bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.shards[shard]
	if seq != "" {
		s.Seq = seq
	}
	s.Closed = s.Closed || closed
	c.shards[shard] = s
	b, err := json.Marshal(checkpointFile{Version: checkpointVersion, Shards: c.shards})
	if err != nil {
		return fmt.Errorf("kinesis: checkpoint: %w", err)
	}
	if err := writeAtomic(c.path, b); err != nil {
		return fmt.Errorf("kinesis: checkpoint: %w", err)
	}
	return nil
}

// writeAtomic replaces path with b so that a crash leaves either the old
// or the new content.
func writeAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
