//go:build linux

package lambda_test

import (
	"archive/zip"
	"testing"
)

// TestLayerSize: the layer's extensions/les (built by scripts/layer.sh)
// is at most 10 MB, the budget of ADR 0005.
func TestLayerSize(t *testing.T) {
	_, layer, _ := artifacts(t)
	zr, err := zip.OpenReader(layer)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	for _, f := range zr.File {
		if f.Name != "extensions/les" {
			t.Errorf("unexpected file %s in the layer", f.Name)
			continue
		}
		if f.Mode()&0o111 == 0 {
			t.Errorf("extensions/les is not executable: %v", f.Mode())
		}
		if f.UncompressedSize64 > 10_000_000 {
			t.Errorf("extensions/les is %d bytes, over the 10 MB budget (ADR 0005: is internal/format/otlp linked through internal/ingest?)", f.UncompressedSize64)
		}
	}
}
