package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// maxSkippedDocBlocks bounds the shell blocks of docs/ and internal/**/README.md
// marked <!-- readme-test: skip (why) -->: a block a user copies should run
// here; only the few that need something this machine cannot have (an AWS
// account, a Kafka cluster, minutes of cross-compiling) are marked.
const maxSkippedDocBlocks = 4

// docFiles are the Markdown files whose blocks TestDocShellBlocks runs:
// docs/*.md and every README.md under internal/ (README.md itself is
// TestReadmeShellBlocks').
func docFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, root := range []string{"docs", "internal"} {
		err := filepath.WalkDir(filepath.Join(repoRoot, root), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && strings.HasSuffix(p, ".md") && (root == "docs" || d.Name() == "README.md") {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return files
}

// docBlockLib is sourced at the top of every block TestDocShellBlocks runs.
// les_up starts `les up ARGS` in the background and returns once it is
// ready, as a user would in a second terminal; at the end of the block
// every les up it started gets SIGINT and must exit 0, and anything else
// the block left running in the background gets SIGINT too.
const docBlockLib = `__les_pids=()
__les_n=0
les_up() {
  __les_n=$((__les_n+1))
  local log="up.$BLOCK.$__les_n.log" pid
  les up "$@" > "$log" 2>&1 &
  pid=$!
  __les_pids+=("$pid")
  until grep -q 'Press Ctrl-C to stop.' "$log"; do
    kill -0 "$pid" 2>/dev/null || { echo "les up $* exited before it was ready:"; cat "$log"; return 3; }
    sleep 0.05
  done
}
__stop() {
  local rc=$? p
  for p in "${__les_pids[@]}"; do
    if kill -INT "$p" 2>/dev/null; then
      wait "$p" || { echo "les up exited $? after SIGINT:"; cat up.$BLOCK.*.log; rc=1; }
    fi
  done
  for p in $(jobs -p); do kill -INT "$p" 2>/dev/null || true; done
  wait
  exit $rc
}
trap __stop EXIT
`

// lesUpLine is a line that starts les up in the foreground ("in one
// terminal"); TestDocShellBlocks runs it with les_up.
var lesUpLine = regexp.MustCompile(`(?m)^([ \t]*)(?:\./)?les up\b([^&#\n]*?)[ \t]*(#.*)?$`)

// TestDocShellBlocks runs the ```sh and ```bash blocks of docs/*.md and of
// the READMEs under internal/ the way TestReadmeShellBlocks runs the
// README's: as written, with bash -euo pipefail, in a network namespace of
// their own with the default ports free, one after the other in one
// directory where `les` (built from this tree) is on PATH and docs/ is the
// tree's. A block runs against the `les up` it starts itself (a line
// `les up …` without & is started in the background and the block goes on
// once it is ready; one with & is left to the block), or else against a
// `les up` with the default config started for it. curl fails on an HTTP
// error (--fail-with-body), so a block whose request les refuses fails.
// The files a block reads from the user (app.log, access.log, …) are
// samples from testdata/docblocks.
//
// A block whose commands are all `go test …` is not run (CI runs those
// tests): each command must name packages that exist and a -run/-bench
// pattern of which every alternative selects a test there. A block marked
// <!-- readme-test: skip (why) --> is not run; <!-- readme-test: replace
// 'old' 'new' (why) --> lines just before a block run it with old replaced
// by new (a shorter duration).
func TestDocShellBlocks(t *testing.T) {
	missing := t.Skip
	if os.Getenv("CI") != "" {
		missing = t.Fatal
	}
	for _, tool := range []string{"unshare", "ip", "curl", "python3", "bash", "gzip", "timeout"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing(tool + " is not installed (scripts/test.sh installs it)")
		}
	}
	if err := exec.Command("unshare", "-rnpf", "true").Run(); err != nil {
		missing("cannot create a network and pid namespace (unshare -rnpf): " + err.Error())
	}
	var live, goTests, skipped []block
	for _, f := range docFiles(t) {
		for _, b := range codeBlocks(t, f) {
			if b.lang != "sh" && b.lang != "bash" {
				continue
			}
			switch _, ok := goTestCommands(b.text); {
			case b.skip != "":
				skipped = append(skipped, b)
			case ok:
				goTests = append(goTests, b)
			default:
				live = append(live, b)
			}
		}
	}
	if len(skipped) > maxSkippedDocBlocks {
		var s strings.Builder
		for _, b := range skipped {
			fmt.Fprintf(&s, "\n%s:%d (%s)", b.file, b.line, b.skip)
		}
		t.Errorf("%d doc blocks are marked not to run, at most %d may be:%s", len(skipped), maxSkippedDocBlocks, s.String())
	}
	if len(live) < 5 || len(goTests) < 3 {
		t.Fatalf("found only %d runnable and %d go test blocks in docs", len(live), len(goTests))
	}
	t.Run("go test", func(t *testing.T) {
		for _, b := range goTests {
			checkGoTestBlock(t, b)
		}
	})

	bin := lesBin(t)
	work := t.TempDir()
	abs, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"bin/curl": failingCurl(t), "lib.sh": docBlockLib}
	fixtures, err := filepath.Glob(filepath.Join("testdata", "docblocks", "*"))
	if err != nil || len(fixtures) == 0 {
		t.Fatalf("no fixtures in testdata/docblocks: %v", err)
	}
	for _, p := range fixtures {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(p)] = string(b)
		if filepath.Base(p) == "subscription.json" {
			var gz bytes.Buffer
			zw := gzip.NewWriter(&gz)
			zw.Write(b)
			zw.Close()
			files["subscription.json.gz"] = gz.String()
		}
	}
	var script strings.Builder
	script.WriteString("set -u\nip link set lo up\nexport PATH=\"$PWD/bin:$PWD:$PATH\"\n")
	for i, b := range live {
		text := b.text
		for _, r := range b.replace {
			text = strings.ReplaceAll(text, r[0], r[1])
		}
		if lesUpLine.MatchString(text) {
			text = lesUpLine.ReplaceAllString(text, "${1}les_up${2}")
		} else if !regexp.MustCompile(`(?m)^\s*(\./)?les up\b`).MatchString(text) {
			text = "les_up\n" + text
		}
		files[fmt.Sprintf("block%d.sh", i)] = ". ./lib.sh\n" + text
		fmt.Fprintf(&script, "s=$EPOCHREALTIME; BLOCK=%d timeout -k 5 60 bash -euo pipefail block%d.sh > block%d.out 2>&1; echo $? > block%d.rc; echo \"block %d: $s $EPOCHREALTIME\"\n", i, i, i, i, i)
	}
	for name, content := range files {
		p := filepath.Join(work, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, target := range map[string]string{"les": bin, "docs": filepath.Join(abs, "docs")} {
		if err := os.Symlink(target, filepath.Join(work, name)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// -p -f: when the script ends, nothing a block started outlives it.
	cmd := exec.CommandContext(ctx, "unshare", "-rnpf", "bash", "-c", script.String())
	cmd.Dir = work
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("doc blocks: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(work, name))
		return string(b)
	}
	for i, b := range live {
		switch rc := strings.TrimSpace(read(fmt.Sprintf("block%d.rc", i))); rc {
		case "0":
			t.Logf("%s:%d: ok; output:\n%s", b.file, b.line, truncate(read(fmt.Sprintf("block%d.out", i)), 1500))
		case "124", "137":
			t.Errorf("%s:%d: block did not end within 60 s (a command that waits forever?):\n%s\noutput:\n%s", b.file, b.line, b.text, truncate(read(fmt.Sprintf("block%d.out", i)), 4000))
		default:
			t.Errorf("%s:%d: block exited %s:\n%s\noutput:\n%s", b.file, b.line, rc, b.text, truncate(read(fmt.Sprintf("block%d.out", i)), 4000))
		}
	}
}

// failingCurl is a curl for bin/ on PATH that fails on an HTTP error
// answer (--fail-with-body, unless the command asks for -f itself: the two
// exclude each other), so a block whose request les refuses fails.
func failingCurl(t *testing.T) string {
	t.Helper()
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal(err)
	}
	return "#!/bin/bash\nfor a; do [[ $a == --fail || $a =~ ^-[a-zA-Z]*f[a-zA-Z]*$ ]] && exec " + curl + " \"$@\"; done\nexec " + curl + " --fail-with-body \"$@\"\n"
}

// goTestCommands splits text into its commands (comments and blank lines
// left out) and says whether every one is `go test …`.
func goTestCommands(text string) ([][]string, bool) {
	var cmds [][]string
	for _, line := range strings.Split(text, "\n") {
		args := shellWords(line)
		for len(args) > 0 && envAssign.MatchString(args[0]) {
			args = args[1:] // LES_X=1 go test …
		}
		if len(args) == 0 {
			continue
		}
		if len(args) < 2 || args[0] != "go" || args[1] != "test" {
			return nil, false
		}
		cmds = append(cmds, args)
	}
	return cmds, len(cmds) > 0
}

// shellWords splits one line of shell into words: '…' and "…" quote,
// an unquoted # starts a comment. Enough for the go test lines of the docs.
func shellWords(line string) []string {
	var words []string
	var w strings.Builder
	in, quote := false, byte(0)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			w.WriteByte(c)
		case c == '\'' || c == '"':
			quote, in = c, true
		case c == '#' && !in:
			i = len(line)
		case c == ' ' || c == '\t':
			if in {
				words = append(words, w.String())
				w.Reset()
				in = false
			}
		default:
			w.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, w.String())
	}
	return words
}

var envAssign = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// testFunc is a top-level test, benchmark, fuzz target or example.
var testFunc = regexp.MustCompile(`(?m)^func ((?:Test|Benchmark|Fuzz|Example)\w*)\(`)

// testNames lists the tests of the package in dir as go test -list would,
// from the source (without building it, which costs a minute here).
func testNames(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no test files in %s", dir)
	}
	var names []string
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, m := range testFunc.FindAllSubmatch(src, -1) {
			names = append(names, string(m[1]))
		}
	}
	return names, nil
}

// checkGoTestBlock checks each `go test` command of b: its packages exist
// and its -bench (else -run) pattern selects tests there, each alternative
// of the pattern at least one.
func checkGoTestBlock(t *testing.T, b block) {
	cmds, _ := goTestCommands(b.text)
	for _, args := range cmds {
		var run, bench string
		var pkgs []string
		for i := 2; i < len(args); i++ {
			a := args[i]
			if a == "-args" {
				break
			}
			if (a == "-run" || a == "-bench") && i+1 < len(args) {
				if a == "-run" {
					run = args[i+1]
				} else {
					bench = args[i+1]
				}
				i++
			} else if strings.HasPrefix(a, "./") {
				pkgs = append(pkgs, a)
			}
		}
		pattern := run
		if bench != "" {
			pattern = bench
		}
		if len(pkgs) == 0 {
			t.Errorf("%s:%d: %s: no ./package to check", b.file, b.line, strings.Join(args, " "))
			continue
		}
		// Top-level names only: drop subtest parts.
		var alts []string
		for _, alt := range strings.Split(pattern, "|") {
			alt, _, _ = strings.Cut(alt, "/")
			alts = append(alts, alt)
		}
		if pattern == "" {
			alts = []string{"."}
		}
		var names []string
		for _, pkg := range pkgs {
			n, err := testNames(filepath.Join(repoRoot, pkg))
			if err != nil {
				t.Errorf("%s:%d: %s: %v", b.file, b.line, strings.Join(args, " "), err)
			}
			names = append(names, n...)
		}
		for _, alt := range alts {
			re, err := regexp.Compile(alt)
			if err != nil {
				t.Errorf("%s:%d: %s: bad pattern %q: %v", b.file, b.line, strings.Join(args, " "), alt, err)
				continue
			}
			found := false
			for _, n := range names {
				found = found || re.MatchString(n)
			}
			if !found {
				t.Errorf("%s:%d: %s: no test in %s matches %q", b.file, b.line, strings.Join(args, " "), strings.Join(pkgs, " "), alt)
			}
		}
	}
}
