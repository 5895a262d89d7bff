package cli

import (
	"context"
	"fmt"

	"github.com/hashgrid/hashgrid/compute/sandbox"
)

// sandboxExecCommand is the child side of compute/sandbox: a provider's agent starts
// `hashgrid sandbox-exec` for each job, writes the job to its standard input and
// reads the result from its standard output.
func sandboxExecCommand() *Command {
	return &Command{
		Name:   sandbox.ExecCommand,
		Short:  "run one sandboxed WebAssembly job read from stdin (started by the provider agent)",
		Hidden: true,
		Run: func(ctx context.Context, args []string, env Env) error {
			fs := newFlagSet(sandbox.ExecCommand, env)
			if err := parseFlags(fs, args); err != nil {
				return err
			}
			if code := sandbox.ChildMain(env.Stdin, env.Stdout, env.Stderr); code != 0 {
				return fmt.Errorf("sandbox child failed (exit %d)", code)
			}
			return nil
		},
	}
}
