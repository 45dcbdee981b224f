package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/les-streams/les/internal/app"
)

var repoRoot = filepath.Join("..", "..")

// block is one fenced code block of a Markdown file.
type block struct {
	file string
	line int // of the opening fence
	lang string
	text string
	skip string // the reason of a <!-- readme-test: skip (…) --> just before it
	// replace holds the pairs of the <!-- readme-test: replace 'old' 'new' (why) -->
	// lines just before it: the test runs the block with each old text replaced.
	replace [][2]string
}

var (
	fence       = regexp.MustCompile("(?m)^```([a-z]*)\\n")
	skipMark    = regexp.MustCompile(`<!-- readme-test: skip \((.+)\) -->\s*$`)
	replaceMark = regexp.MustCompile(`^<!-- readme-test: replace '([^']+)' '([^']*)' \(.+\) -->$`)
)

func codeBlocks(t *testing.T, path string) []block {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	var out []block
	for off := 0; ; {
		m := fence.FindStringSubmatchIndex(s[off:])
		if m == nil {
			return out
		}
		start, bodyStart := off+m[0], off+m[1]
		end := strings.Index(s[bodyStart:], "\n```")
		if end < 0 {
			t.Fatalf("%s: unclosed code block", path)
		}
		b := block{file: path, line: strings.Count(s[:start], "\n") + 1, lang: s[off+m[2] : off+m[3]], text: s[bodyStart : bodyStart+end+1]}
		if sm := skipMark.FindStringSubmatch(s[:start]); sm != nil {
			b.skip = sm[1]
		}
		lines := strings.Split(strings.TrimRight(s[:start], "\n"), "\n")
		for i := len(lines) - 1; i >= 0 && strings.HasPrefix(lines[i], "<!-- readme-test: replace "); i-- {
			rm := replaceMark.FindStringSubmatch(lines[i])
			if rm == nil {
				t.Fatalf("%s:%d: malformed marker (want <!-- readme-test: replace 'old' 'new' (why) -->): %s", path, i+1, lines[i])
			}
			if !strings.Contains(b.text, rm[1]) {
				t.Fatalf("%s:%d: the block below has no %q to replace", path, i+1, rm[1])
			}
			b.replace = append(b.replace, [2]string{rm[1], rm[2]})
		}
		out = append(out, b)
		off = bodyStart + end + 4
	}
}

// TestDocYAMLBlocksLoad: every ```yaml block of the README, docs/ and the
// READMEs under internal/ is a whole les.yaml that `les config check`
// (app.Load) accepts. A block that starts with "# fragment" is part of
// one by design and only has to parse as YAML.
func TestDocYAMLBlocksLoad(t *testing.T) {
	t.Setenv("LES_TOKEN", "")
	files := append([]string{filepath.Join(repoRoot, "README.md")}, docFiles(t)...)
	dir := t.TempDir()
	n := 0
	for _, f := range files {
		for _, b := range codeBlocks(t, f) {
			if b.lang != "yaml" && b.lang != "yml" {
				continue
			}
			n++
			if strings.HasPrefix(b.text, "# fragment") {
				var v any
				if err := yaml.Unmarshal([]byte(b.text), &v); err != nil {
					t.Errorf("%s:%d: fragment is not YAML: %v", b.file, b.line, err)
				}
				continue
			}
			p := filepath.Join(dir, fmt.Sprintf("block%d.yaml", n))
			if err := os.WriteFile(p, []byte(b.text), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := app.Load(p); err != nil {
				t.Errorf("%s:%d: les config check fails:\n%v", b.file, b.line, strings.ReplaceAll(err.Error(), p, "block"))
			}
		}
	}
	if n < 5 {
		t.Fatalf("found only %d yaml blocks", n)
	}
}

// TestReadmeShellBlocks runs the ```sh blocks of README.md as written
// (except those marked <!-- readme-test: skip (why) -->) with bash, curl
// and python3 (curl failing on an HTTP error answer), against a `les up`
// with the default config built from this tree, in a network namespace of their own so the default ports are free
// and nothing else is touched. Then it checks that what the commands sent
// is on the stream: every line of the StatsD loop, and the Wavefront
// points of each transport.
func TestReadmeShellBlocks(t *testing.T) {
	missing := t.Skip
	if os.Getenv("CI") != "" {
		missing = t.Fatal
	}
	for _, tool := range []string{"unshare", "ip", "curl", "python3", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing(tool + " is not installed (scripts/test.sh installs it)")
		}
	}
	if err := exec.Command("unshare", "-rn", "true").Run(); err != nil {
		missing("cannot create a network namespace (unshare -rn): " + err.Error())
	}
	bin := lesBin(t)
	work := t.TempDir()
	if err := os.Symlink(bin, filepath.Join(work, "les")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(work, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "bin", "curl"), []byte(failingCurl(t)), 0o755); err != nil {
		t.Fatal(err)
	}
	var script strings.Builder
	script.WriteString(`set -u
ip link set lo up
export PATH="$PWD/bin:$PWD:$PATH"
./les up > up.log 2>&1 &
up=$!
until grep -q 'Press Ctrl-C to stop.' up.log; do
  kill -0 $up 2>/dev/null || { echo "les up exited"; cat up.log; exit 3; }
  sleep 0.05
done
`)
	var run []block
	for _, b := range codeBlocks(t, filepath.Join(repoRoot, "README.md")) {
		if b.lang != "sh" || b.skip != "" {
			continue
		}
		i := len(run)
		run = append(run, b)
		if err := os.WriteFile(filepath.Join(work, fmt.Sprintf("block%d.sh", i)), []byte(b.text), 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&script, "bash -euo pipefail block%d.sh > block%d.out 2>&1; echo $? > block%d.rc\n", i, i, i)
	}
	if len(run) < 3 {
		t.Fatalf("only %d runnable sh blocks in README.md", len(run))
	}
	// What the blocks sent, once it is on the stream (the batches flush
	// every 200 ms; les up drains them at SIGINT).
	script.WriteString(`kill -INT $up; wait $up; echo $? > up.rc
./les up > up2.log 2>&1 &
up=$!
until grep -q 'Press Ctrl-C to stop.' up2.log; do sleep 0.05; done
./les tail --from-start --until-end > stream.ndjson 2> tail.err; echo $? > tail.rc
kill -TERM $up; wait $up
`)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "-rn", "bash", "-c", script.String())
	cmd.Dir = work
	out, err := cmd.CombinedOutput()
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(work, name))
		return string(b)
	}
	if err != nil {
		t.Fatalf("README run: %v\n%s\nup.log:\n%s", err, out, read("up.log"))
	}
	for i, b := range run {
		if rc := strings.TrimSpace(read(fmt.Sprintf("block%d.rc", i))); rc != "0" {
			t.Errorf("%s:%d: block exited %s:\n%s\noutput:\n%s", b.file, b.line, rc, b.text, read(fmt.Sprintf("block%d.out", i)))
		}
	}
	if rc := strings.TrimSpace(read("up.rc")); rc != "0" {
		t.Errorf("les up exited %s after SIGINT:\n%s", rc, read("up.log"))
	}
	if rc := strings.TrimSpace(read("tail.rc")); rc != "0" {
		t.Fatalf("les tail --from-start --until-end exited %s: %s", rc, read("tail.err"))
	}
	stream := read("stream.ndjson")
	count := func(re string) int { return len(regexp.MustCompile(re).FindAllStringIndex(stream, -1)) }
	if n := count(`"name":"checkout\.latency","value":\d+,"kind":"sample"`); n != 100 {
		t.Errorf("the StatsD loop delivered %d of 100 timers", n)
	}
	for _, want := range []string{
		`"name":"lambda.example","value":0.42,`,      // UDP via /dev/udp
		`"name":"lambda.example","value":0.57,`,      // les send (TCP)
		`"name":"lambda.http","value":3,`,            // HTTP /report
		`"name":"py.metric","value":1,`,              // python3 socket
		`"name":"orders","value":3,"kind":"counter"`, // OTLP by hand
	} {
		if !strings.Contains(stream, want) {
			t.Errorf("not on the stream: %s", want)
		}
	}
	if t.Failed() {
		t.Logf("stream:\n%s", truncate(stream, 4000))
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "\n…"
}
