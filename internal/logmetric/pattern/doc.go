// Package pattern implements the CloudWatch Logs filter pattern language —
// unstructured terms, space-delimited `[...]` patterns, JSON `{...}` patterns
// and `%regex%` — together with metric filter transformations, in pure Go.
//
// Compile parses a pattern once into an immutable *Pattern that is safe for
// concurrent use. Each goroutine matches lines through its own *Matcher,
// which holds reusable scratch space so that Match allocates nothing. After a
// successful Match the Matcher resolves metric value and dimension selectors
// ("$field", "$N", "$.path") against the matched line.
//
// Ownership: Match does not retain line beyond the next call to Match on the
// same Matcher; Resolve, Fields and Value read from it, so the caller must not
// modify line until it has finished with them. Strings returned by Resolve
// and Fields are copies and never alias line.
//
// See README.md for the supported syntax and every deliberate deviation from
// CloudWatch.
package pattern
