// Command digits is the inference program that compute leases run: model.Classify
// built for WebAssembly (GOOS=wasip1 GOARCH=wasm). With no arguments it classifies
// its standard input; otherwise each named file in turn (a job's inputs, under /in).
// It prints one line per digit: the class, then the ten integer scores.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/hashgrid/hashgrid/compute/model"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	net := model.Default()
	if len(args) == 0 {
		if err := net.Classify(stdout, stdin); err != nil {
			fmt.Fprintf(stderr, "digits: stdin: %v\n", err)
			return 1
		}
		return 0
	}
	for _, name := range args {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintf(stderr, "digits: %v\n", err)
			return 1
		}
		err = net.Classify(stdout, f)
		f.Close()
		if err != nil {
			fmt.Fprintf(stderr, "digits: %s: %v\n", name, err)
			return 1
		}
	}
	return 0
}
