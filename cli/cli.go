// Package cli implements the subcommands of the hashgrid binary. Each subcommand is a
// value with its own flag.FlagSet and a run function that takes its context, arguments
// and streams explicitly, so tests call subcommands directly, in process.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Env carries what a subcommand may read from its surroundings.
type Env struct {
	Getenv func(string) string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// Command is one subcommand.
type Command struct {
	Name  string
	Short string // one line for the usage listing
	// Hidden commands are left out of the usage listing: they are started by
	// hashgrid itself, not by people.
	Hidden bool
	// Run executes the command with the arguments after its name.
	Run func(ctx context.Context, args []string, env Env) error
}

// commands lists every subcommand. Each lives in its own file of this package.
func commands() []*Command {
	return []*Command{
		versionCommand(),
		powerCommand(),
		minersimCommand(),
		poolCommand(),
		minerCommand(),
		demoCommand(),
		benchCommand(),
		registryCommand(),
		verifyCommand(),
		marketCommand(),
		providerCommand(),
		computeCommand(),
		sandboxExecCommand(),
	}
}

// ErrUsage is returned (wrapped) for bad command-line usage; it exits with status 2.
var ErrUsage = errors.New("usage")

// Run runs the subcommand named by args[0], after hashgrid's own flags:
//
//	hashgrid [--log-format text|json] <command> [flags]
//
// $HASHGRID_LOG_FORMAT sets the log format when the flag is not given.
func Run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	cmds := commands()
	format, args, err := globalFlags(args, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "hashgrid: %v\n", err)
		usage(stderr, cmds)
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if format != "" {
		stderr = logWriter{Writer: stderr, format: format}
	}
	env := Env{Getenv: getenv, Stdin: stdin, Stdout: stdout, Stderr: stderr}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr, cmds)
		if len(args) == 0 {
			return fmt.Errorf("%w: no subcommand", ErrUsage)
		}
		return nil
	}
	for _, c := range cmds {
		if c.Name == args[0] {
			err := c.Run(ctx, args[1:], env)
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			if err != nil && !errors.Is(err, context.Canceled) {
				fmt.Fprintf(stderr, "hashgrid %s: %v\n", c.Name, err)
			}
			return err
		}
	}
	fmt.Fprintf(stderr, "hashgrid: unknown command %q\n\n", args[0])
	usage(stderr, cmds)
	return fmt.Errorf("%w: unknown command %q", ErrUsage, args[0])
}

// globalFlags takes hashgrid's own flags from the front of args.
func globalFlags(args []string, getenv func(string) string) (format string, rest []string, err error) {
	format = getenv(envLogFormat)
	for len(args) > 0 {
		name, value, hasValue := strings.Cut(strings.TrimLeft(args[0], "-"), "=")
		if !strings.HasPrefix(args[0], "-") || name != "log-format" {
			break
		}
		args = args[1:]
		if !hasValue {
			if len(args) == 0 {
				return "", nil, errors.New("--log-format needs a value: text or json")
			}
			value, args = args[0], args[1:]
		}
		format = value
	}
	if err := checkLogFormat(format); err != nil {
		return "", nil, err
	}
	return format, args, nil
}

func usage(w io.Writer, cmds []*Command) {
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].Name < cmds[j].Name })
	var b strings.Builder
	b.WriteString("usage: hashgrid [--log-format text|json] <command> [flags]\n\ncommands:\n")
	for _, c := range cmds {
		if c.Hidden {
			continue
		}
		fmt.Fprintf(&b, "  %-10s %s\n", c.Name, c.Short)
	}
	b.WriteString("\nRun 'hashgrid <command> -h' for a command's flags. Logs are text unless --log-format or\n$HASHGRID_LOG_FORMAT says json.\n")
	io.WriteString(w, b.String())
}

// ExitCode maps an error from Run to a process exit status.
func ExitCode(err error) int {
	switch {
	case err == nil, errors.Is(err, context.Canceled):
		return 0
	case errors.Is(err, ErrUsage):
		return 2
	default:
		return 1
	}
}

// newFlagSet returns a FlagSet that reports errors instead of exiting.
func newFlagSet(name string, env Env) *flag.FlagSet {
	fs := flag.NewFlagSet("hashgrid "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	return fs
}

// parseFlags parses args and wraps flag errors as usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", ErrUsage, fs.Arg(0))
	}
	return nil
}
