package model

// Reject records one input item that was refused, with its reason.
// Reason is a short constant string (it becomes the reason label of
// les_ingest_rejected_total); Line aliases the decoder's input and is only
// valid until that input is reused.
type Reject struct {
	Reason string
	Line   []byte
}

// Batch is a reusable container that decoders append items to.
//
// Items appended by a decoder may alias that decoder's input; Reset keeps the
// capacity of every slice so a warm Batch decodes without allocating. Tags of
// items are sub-slices of Arena (centroids of CentroidArena, span events and
// links of EventArena and LinkArena): growing an arena never invalidates
// slices already handed out, because the old backing array stays reachable
// through them. A decoder may instead give items strings and tags it owns
// and shares between items and batches (the wavefront series cache,
// wavefront.Options.SeriesCache: every point of a series then has the same
// Name, Source and Tags memory). So an item's Tags are read-only: never
// modify their elements in place or assume they lie in Arena; to change
// them, build a new slice (TagsSince after AddTag, or a copy).
type Batch struct {
	Metrics []Metric
	Dists   []Distribution
	Logs    []Log
	Spans   []Span
	Rejects []Reject

	Arena         Tags
	CentroidArena []Centroid
	// EventArena and LinkArena hold the Events and Links of Spans.
	EventArena []SpanEvent
	LinkArena  []SpanLink
	// SeriesN is how many series numbers (Metric.Series) decoders have
	// given out in this batch.
	SeriesN uint32
	// Continues and More place the batch in a record handed over in
	// parts (wire.Decoder.DecodeParts): Continues is set on every part
	// after the first (its items' strings and series numbers are the
	// previous part's record's), More on every part but the last.
	Continues, More bool
}

// Reset empties the batch and keeps its capacity.
func (b *Batch) Reset() {
	clear(b.Metrics) // drop references to old input
	b.Metrics = b.Metrics[:0]
	clear(b.Dists)
	b.Dists = b.Dists[:0]
	clear(b.Logs)
	b.Logs = b.Logs[:0]
	clear(b.Spans)
	b.Spans = b.Spans[:0]
	clear(b.Rejects)
	b.Rejects = b.Rejects[:0]
	clear(b.Arena)
	b.Arena = b.Arena[:0]
	b.CentroidArena = b.CentroidArena[:0]
	clear(b.EventArena)
	b.EventArena = b.EventArena[:0]
	clear(b.LinkArena)
	b.LinkArena = b.LinkArena[:0]
	b.SeriesN = 0
	b.Continues, b.More = false, false
}

// SeriesRepeat reports whether a decoder numbered the batch's series
// (Metric.Series) and its metrics hold at least k points per series on
// average: where a SeriesMemo pays for its misses.
func (b *Batch) SeriesRepeat(k int) bool {
	return b.SeriesN > 0 && len(b.Metrics) >= k*int(b.SeriesN)
}

// Len is the number of accepted items in the batch.
func (b *Batch) Len() int {
	return len(b.Metrics) + len(b.Dists) + len(b.Logs) + len(b.Spans)
}

// Reject appends a rejection with its reason.
func (b *Batch) Reject(reason string, line []byte) {
	b.Rejects = append(b.Rejects, Reject{Reason: reason, Line: line})
}

// TagMark returns the current end of the tag arena; pass it to TagsSince
// after appending a list of tags with AddTag.
func (b *Batch) TagMark() int { return len(b.Arena) }

// AddTag appends one tag to the arena.
func (b *Batch) AddTag(key, value string) { b.Arena = append(b.Arena, Tag{Key: key, Value: value}) }

// TagsSince returns the tags appended since mark, with capacity clipped so
// that appending to the result can never overwrite a neighbour.
func (b *Batch) TagsSince(mark int) Tags {
	if mark == len(b.Arena) {
		return nil
	}
	return b.Arena[mark:len(b.Arena):len(b.Arena)]
}

// TruncateTags drops the tags appended since mark (used when a line that
// already added tags is rejected).
func (b *Batch) TruncateTags(mark int) {
	clear(b.Arena[mark:])
	b.Arena = b.Arena[:mark]
}
