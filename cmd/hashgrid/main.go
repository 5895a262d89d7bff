// Command hashgrid is the one binary of hashgrid: a Bitcoin mining pool, a hashrate
// market, an energy-aware fleet controller and a workload registry. See cli for the
// subcommands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/hashgrid/hashgrid/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.Run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(cli.ExitCode(err))
}
