package app

import _ "embed"

// ExampleConfig is a commented les.yaml with every section (printed by
// `les config example`; a test checks that it loads).
//
//go:embed example.yaml
var ExampleConfig string
