package cli

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is stamped by a release build:
//
//	go build -ldflags "-X github.com/hashgrid/hashgrid/cli.version=v1.2.3" ./cmd/hashgrid
//
// Without it, the version comes from the build information: the module version under
// `go install …@vX`, else the VCS revision and time Go records when it builds from a
// git checkout.
var version string

func versionCommand() *Command {
	return &Command{
		Name:  "version",
		Short: "print the version of this build",
		Run: func(ctx context.Context, args []string, env Env) error {
			fs := newFlagSet("version", env)
			if err := parseFlags(fs, args); err != nil {
				return err
			}
			bi, _ := debug.ReadBuildInfo()
			fmt.Fprintf(env.Stdout, "hashgrid %s\n", versionString(version, bi))
			return nil
		},
	}
}

// versionString says what a build is: its stamp, else its module version, else its VCS
// revision, else that nothing identifies it (never a bare "(devel)").
func versionString(stamp string, bi *debug.BuildInfo) string {
	goVersion := runtime.Version()
	if bi != nil && bi.GoVersion != "" {
		goVersion = bi.GoVersion
	}
	if stamp != "" {
		return stamp + " (" + goVersion + ")"
	}
	var rev, at string
	modified := false
	if bi != nil {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			return v + " (" + goVersion + ")"
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if rev == "" {
		return "devel, unversioned: built without a version stamp or VCS information (" + goVersion + ")"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	v := "devel-" + rev
	if modified {
		v += "-dirty"
	}
	if at != "" {
		v += " " + at
	}
	return v + " (" + goVersion + ")"
}
