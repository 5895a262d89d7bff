package cli

import (
	"context"
	"fmt"
	"runtime/debug"
)

func versionCommand() *Command {
	return &Command{
		Name:  "version",
		Short: "print the version of this build",
		Run: func(ctx context.Context, args []string, env Env) error {
			fs := newFlagSet("version", env)
			if err := parseFlags(fs, args); err != nil {
				return err
			}
			v := "(devel)"
			if bi, ok := debug.ReadBuildInfo(); ok {
				v = bi.Main.Version
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" {
						v += " " + s.Value
					}
				}
			}
			fmt.Fprintf(env.Stdout, "hashgrid %s\n", v)
			return nil
		},
	}
}
