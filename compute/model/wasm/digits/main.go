// Command digits is the inference program that compute leases run: model.Classify
// built for WebAssembly (GOOS=wasip1 GOARCH=wasm). With no arguments it classifies
// its standard input; with the one argument "serve" it is a service (see serve);
// otherwise it classifies each named file in turn (a job's inputs, under /in). It
// prints one line per digit: the class, then the ten integer scores.
package main

import (
	"bytes"
	"encoding/binary"
	"errors"
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
	if len(args) == 1 && args[0] == "serve" {
		if err := serve(net, stdin, stdout); err != nil {
			fmt.Fprintf(stderr, "digits: serve: %v\n", err)
			return 1
		}
		return 0
	}
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

// maxRequest bounds one request to the service.
const maxRequest = 1 << 20

// serve is the service mode (compute/sandbox's framing): the network is loaded once,
// then each request, a 4-byte big-endian length and that many bytes of digit lines,
// is answered in the same framing with what Classify prints for those lines. A
// request that is not digit lines (or is over maxRequest bytes) is answered with one
// line, "error: " and why, and the service goes on. It returns nil at the end of its
// input.
func serve(net *model.Net, in io.Reader, out io.Writer) error {
	var n [4]byte
	var resp bytes.Buffer
	for {
		if _, err := io.ReadFull(in, n[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("request length: %w", err)
		}
		size := int64(binary.BigEndian.Uint32(n[:]))
		resp.Reset()
		resp.Write([]byte{0, 0, 0, 0})
		if size > maxRequest {
			if _, err := io.CopyN(io.Discard, in, size); err != nil {
				return fmt.Errorf("request: %w", err)
			}
			fmt.Fprintf(&resp, "error: request of %d bytes over %d\n", size, maxRequest)
		} else {
			req := make([]byte, size)
			if _, err := io.ReadFull(in, req); err != nil {
				return fmt.Errorf("request: %w", err)
			}
			if err := net.Classify(&resp, bytes.NewReader(req)); err != nil {
				resp.Truncate(4)
				fmt.Fprintf(&resp, "error: %v\n", err)
			}
		}
		b := resp.Bytes()
		binary.BigEndian.PutUint32(b, uint32(len(b)-4))
		if _, err := out.Write(b); err != nil {
			return fmt.Errorf("response: %w", err)
		}
	}
}
