//go:build linux

package lambda_test

import (
	"archive/zip"
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// layerArchs are the layer's architectures: Lambda's name and GOARCH.
var layerArchs = []struct {
	name, goarch string
	machine      elf.Machine
}{
	{"x86_64", "amd64", elf.EM_X86_64},
	{"arm64", "arm64", elf.EM_AARCH64},
}

// otherLayerOnce builds the layer zips artifacts does not (the
// architectures other than this machine's), once per test binary.
var otherLayerOnce struct {
	sync.Once
	err error
}

// layerZips are the paths of both layer zips, by Lambda architecture
// name: this machine's from artifacts, the others cross-compiled by
// scripts/layer.sh into the same directory.
func layerZips(t *testing.T) map[string]string {
	t.Helper()
	_, host, _ := artifacts(t)
	dir := filepath.Dir(host)
	zips := map[string]string{}
	var others []string
	for _, a := range layerArchs {
		zips[a.name] = filepath.Join(dir, "les-extension-"+a.name+".zip")
		if a.goarch != runtime.GOARCH {
			others = append(others, a.name)
		}
	}
	otherLayerOnce.Do(func() {
		c := exec.Command("bash", filepath.Join(moduleRoot(t), "scripts", "layer.sh"))
		c.Dir = moduleRoot(t)
		c.Env = append(os.Environ(), "LES_LAYER_ARCHS="+strings.Join(others, " "), "LES_LAYER_OUT="+dir)
		if out, err := c.CombinedOutput(); err != nil {
			otherLayerOnce.err = fmt.Errorf("%v: %v\n%s", c.Args, err, out)
		}
	})
	if otherLayerOnce.err != nil {
		t.Fatal(otherLayerOnce.err)
	}
	return zips
}

// serverModules are stream servers: the extension links none (issue 8,
// DESIGN §8 and §11).
var serverModules = []string{"github.com/nats-io/nats-server/v2", "github.com/twmb/franz-go/pkg/kfake"}

// TestLayerSize: each layer zip (x86_64 and arm64, built by
// scripts/layer.sh) holds only extensions/les, executable, for its
// architecture, at most 10 MB (the budget of ADR 0005), stripped (no
// symbol table, no DWARF), static (no interpreter, no dynamic section)
// and without an embedded stream server (no nats-server or kfake module
// in its build information, no internal/stream/embedded package in its
// function table).
func TestLayerSize(t *testing.T) {
	zips := layerZips(t)
	for _, a := range layerArchs {
		t.Run(a.name, func(t *testing.T) {
			bin := layerBinary(t, zips[a.name])
			for _, p := range checkLayerBinary(bin, a.goarch, a.machine) {
				t.Error(p)
			}
			t.Logf("extensions/les: %d bytes (linux/%s)", len(bin), a.goarch)
		})
	}
}

// layerBinary returns extensions/les of a layer zip, failing the test
// for any other file in it.
func layerBinary(t *testing.T, zipPath string) []byte {
	t.Helper()
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var bin []byte
	for _, f := range zr.File {
		if f.Name != "extensions/les" {
			t.Errorf("unexpected file %s in the layer", f.Name)
			continue
		}
		if f.Mode()&0o111 == 0 {
			t.Errorf("extensions/les is not executable: %v", f.Mode())
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		bin, err = io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	if bin == nil {
		t.Fatal("no extensions/les in the layer")
	}
	return bin
}

// checkLayerBinary returns what is wrong with bin as the layer's
// extension for goarch.
func checkLayerBinary(bin []byte, goarch string, machine elf.Machine) []string {
	var problems []string
	if len(bin) > 10_000_000 {
		problems = append(problems, fmt.Sprintf("extensions/les is %d bytes, over the 10 MB budget (ADR 0005: is internal/format/otlp linked through internal/ingest?)", len(bin)))
	}
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return append(problems, fmt.Sprintf("extensions/les is not an ELF file: %v", err))
	}
	defer f.Close()
	if f.Machine != machine {
		problems = append(problems, fmt.Sprintf("extensions/les is for %v, want %v", f.Machine, machine))
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			problems = append(problems, fmt.Sprintf("extensions/les is not static: it has a %v program header", p.Type))
		}
	}
	for _, s := range f.Sections {
		if s.Name == ".symtab" || strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") {
			problems = append(problems, "extensions/les is not stripped: it has a "+s.Name+" section")
		}
	}
	bi, err := buildinfo.Read(bytes.NewReader(bin))
	if err != nil {
		return append(problems, fmt.Sprintf("extensions/les has no Go build information: %v", err))
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if settings["GOOS"] != "linux" || settings["GOARCH"] != goarch || settings["CGO_ENABLED"] != "0" {
		problems = append(problems, fmt.Sprintf("extensions/les built with GOOS=%s GOARCH=%s CGO_ENABLED=%s, want linux, %s, 0",
			settings["GOOS"], settings["GOARCH"], settings["CGO_ENABLED"], goarch))
	}
	for _, m := range bi.Deps {
		for _, s := range serverModules {
			if m.Path == s {
				problems = append(problems, "extensions/les links a stream server: "+m.Path+" "+m.Version)
			}
		}
	}
	// Function names stay in a stripped Go binary (the runtime's table).
	if bytes.Contains(bin, []byte("github.com/les-streams/les/internal/stream/embedded")) {
		problems = append(problems, "extensions/les links internal/stream/embedded (or its server)")
	}
	return problems
}
