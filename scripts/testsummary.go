//go:build ignore

// testsummary reads 'go test -json' events on standard input and prints what a person
// needs from a whole-suite run: one line per package as 'go test' prints them, the full
// output of every test that failed, every skipped test with its reason, and a closing
// line "tests: N passed, N failed, N skipped". It exits 1 if any test or package failed.
//
// scripts/test pipes its runs through it: go run scripts/testsummary.go
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

type key struct{ pkg, test string }

func main() {
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	buf := map[key]*strings.Builder{} // output of running tests, dropped when they pass
	var passed, failed, skipped int
	var skips []string
	pkgFailed := false
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	for in.Scan() {
		line := in.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			// Not an event: a build error or a script's own line.
			fmt.Fprintf(out, "%s\n", line)
			continue
		}
		k := key{e.Package, e.Test}
		switch e.Action {
		case "output", "build-output":
			b := buf[k]
			if b == nil {
				b = &strings.Builder{}
				buf[k] = b
			}
			b.WriteString(e.Output)
			if e.Action == "build-output" {
				out.WriteString(e.Output)
			}
		case "pass", "fail", "skip":
			if e.Test == "" {
				// A package's end: print it the way 'go test' does.
				switch {
				case e.Action == "fail":
					pkgFailed = true
					if b := buf[k]; b != nil {
						out.WriteString(b.String())
					}
					fmt.Fprintf(out, "FAIL\t%s\t%.3fs\n", e.Package, e.Elapsed)
				case e.Action == "skip":
					fmt.Fprintf(out, "?   \t%s\t[no test files]\n", e.Package)
				default:
					fmt.Fprintf(out, "ok  \t%s\t%.3fs\n", e.Package, e.Elapsed)
				}
				delete(buf, k)
				out.Flush()
				continue
			}
			switch e.Action {
			case "pass":
				passed++
			case "fail":
				failed++
				if b := buf[k]; b != nil {
					out.WriteString(b.String())
				}
			case "skip":
				skipped++
				reason := ""
				if b := buf[k]; b != nil {
					reason = skipReason(b.String())
				}
				skips = append(skips, fmt.Sprintf("%s %s: %s", e.Package, e.Test, reason))
			}
			delete(buf, k)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintf(out, "testsummary: reading events: %v\n", err)
		pkgFailed = true
	}
	if len(skips) > 0 {
		sort.Strings(skips)
		fmt.Fprintf(out, "\nskipped:\n")
		for _, s := range skips {
			fmt.Fprintf(out, "  %s\n", s)
		}
	}
	fmt.Fprintf(out, "\ntests: %d passed, %d failed, %d skipped\n", passed, failed, skipped)
	out.Flush()
	if failed > 0 || pkgFailed {
		os.Exit(1)
	}
}

// skipReason is the text a skipped test gave t.Skip: the lines of its output other than
// the run and result markers.
func skipReason(s string) string {
	var parts []string
	for _, l := range strings.Split(s, "\n") {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		parts = append(parts, t)
	}
	return strings.Join(parts, " / ")
}
