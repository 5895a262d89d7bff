package cli

import (
	"bytes"
	"context"
	"log/slog"
	"runtime/debug"
	"strings"
	"testing"
)

// runCLI runs hashgrid with args as main does and returns its exit status and output.
func runMain(t *testing.T, getenv func(string) string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	err := Run(context.Background(), args, getenv, strings.NewReader(""), &out, &errb)
	return ExitCode(err), out.String(), errb.String()
}

// TestUnknownCommand checks that a mistyped command is called unknown, with the list
// of commands, and exits 2.
func TestUnknownCommand(t *testing.T) {
	code, _, stderr := runMain(t, nil, "poool", "--network", "regtest")
	if code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	if !strings.Contains(stderr, `unknown command "poool"`) || !strings.Contains(stderr, "  pool ") {
		t.Errorf("stderr does not call the command unknown and list the commands:\n%s", stderr)
	}
}

// TestHelp checks that -h works for every command, bench's included, and exits 0.
func TestHelp(t *testing.T) {
	for _, c := range commands() {
		code, _, stderr := runMain(t, nil, c.Name, "-h")
		if code != 0 {
			t.Errorf("hashgrid %s -h: exit %d\n%s", c.Name, code, stderr)
		}
		if !strings.Contains(stderr, "usage") && !strings.Contains(stderr, "Usage") {
			t.Errorf("hashgrid %s -h prints no usage:\n%s", c.Name, stderr)
		}
	}
}

// TestVersion checks that the version names the build: its stamp, its module version
// or its VCS revision, and never a bare "(devel)".
func TestVersion(t *testing.T) {
	code, stdout, _ := runMain(t, nil, "version")
	if code != 0 || !strings.HasPrefix(stdout, "hashgrid ") || strings.Contains(stdout, "(devel)") {
		t.Errorf("hashgrid version: exit %d, %q", code, stdout)
	}
	vcs := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
		{Key: "vcs.time", Value: "2026-12-06T05:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	tests := []struct {
		stamp string
		bi    *debug.BuildInfo
		want  string
	}{
		{"v1.2.3", vcs, "v1.2.3 (go1.26.8)"},
		{"", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.4.0"}}, "v0.4.0 (go1.26.8)"},
		{"", vcs, "devel-0123456789ab-dirty 2026-12-06T05:00:00Z (go1.26.8)"},
		{"", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, "devel, unversioned: built without a version stamp or VCS information (go1.26.8)"},
	}
	for _, tt := range tests {
		if got := versionString(tt.stamp, tt.bi); got != tt.want {
			t.Errorf("versionString(%q, …) = %q, want %q", tt.stamp, got, tt.want)
		}
	}
}

// TestLogFormat checks that logs are JSON when asked, by flag or environment, and
// that an unknown format is a usage error.
func TestLogFormat(t *testing.T) {
	env := func(k string) string {
		if k == envLogFormat {
			return "json"
		}
		return ""
	}
	for _, tt := range []struct {
		args   []string
		getenv func(string) string
		json   bool
	}{
		{[]string{"--log-format", "json"}, nil, true},
		{[]string{"--log-format=json"}, nil, true},
		{nil, env, true},
		{[]string{"--log-format", "text"}, env, false},
		{nil, nil, false},
	} {
		format, rest, err := globalFlags(append(tt.args, "pool", "-h"), orEmpty(tt.getenv))
		if err != nil || strings.Join(rest, " ") != "pool -h" {
			t.Fatalf("%v: %v, rest %v", tt.args, err, rest)
		}
		var b bytes.Buffer
		log, err := newLogger(logWriter{Writer: &b, format: format}, "info")
		if err != nil {
			t.Fatal(err)
		}
		log.Info("hello", slog.Int("n", 1))
		if got := strings.HasPrefix(b.String(), `{"time":`); got != tt.json {
			t.Errorf("%v env %v: logged %q, want JSON %v", tt.args, tt.getenv != nil, b.String(), tt.json)
		}
	}
	if code, _, stderr := runMain(t, nil, "--log-format", "xml", "version"); code != 2 || !strings.Contains(stderr, `unknown log format "xml"`) {
		t.Errorf("--log-format xml: exit %d\n%s", code, stderr)
	}
}

func orEmpty(f func(string) string) func(string) string {
	if f == nil {
		return func(string) string { return "" }
	}
	return f
}
