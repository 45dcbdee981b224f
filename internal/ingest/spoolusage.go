package ingest

// Usage reports the bytes the spool holds and its bound (max_bytes), for
// readiness checks.
func (s *Spool) Usage() (used, limit int64) { return s.size.Load(), s.cfg.MaxBytes }

// Dir is the directory the spool keeps its files in.
func (s *Spool) Dir() string { return s.cfg.Dir }
