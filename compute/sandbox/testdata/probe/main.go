// Command probe is a wasip1 module the compute/sandbox tests run: its first argument
// says what to do, so one build serves every test.
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

//go:wasmimport wasi_snapshot_preview1 sock_accept
func sockAccept(fd, flags int32, newFD unsafe.Pointer) int32

// sockAcceptAny tries sock_accept on the first descriptors, where any preopened
// socket would be; nil means one accepted.
func sockAcceptAny() error {
	var errnos []int32
	for fd := int32(0); fd < 16; fd++ {
		var newFD int32
		errno := sockAccept(fd, 0, unsafe.Pointer(&newFD))
		if errno == 0 {
			return nil
		}
		errnos = append(errnos, errno)
	}
	return fmt.Errorf("errnos %v", errnos)
}

// sink keeps allocations and loop results alive, so the compiler cannot drop them.
var sink [][]byte
var spun uint64

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "probe: no mode")
		os.Exit(64)
	}
	arg := func(i int) int {
		n, err := strconv.Atoi(os.Args[i])
		if err != nil {
			fmt.Fprintln(os.Stderr, "probe:", err)
			os.Exit(64)
		}
		return n
	}
	switch os.Args[1] {
	case "echo": // stdin to stdout
		if _, err := io.Copy(os.Stdout, os.Stdin); err != nil {
			fmt.Fprintln(os.Stderr, "probe:", err)
			os.Exit(1)
		}
	case "cat": // the named files to stdout
		for _, name := range os.Args[2:] {
			b, err := os.ReadFile(name)
			if err != nil {
				fmt.Fprintln(os.Stderr, "probe:", err)
				os.Exit(1)
			}
			os.Stdout.Write(b)
		}
	case "exit": // exit with the given code, after a word on stderr
		fmt.Fprintln(os.Stderr, "exiting")
		os.Exit(arg(2))
	case "alloc": // hold N MiB, touching every page
		for i := 0; i < arg(2); i++ {
			b := make([]byte, 1<<20)
			for j := 0; j < len(b); j += 4096 {
				b[j] = 1
			}
			sink = append(sink, b)
		}
		fmt.Printf("held %d MiB\n", len(sink))
	case "spin": // burn CPU forever
		for {
			spun = spun*6364136223846793005 + 1442695040888963407
		}
	case "print": // write N bytes to stdout
		b := make([]byte, arg(2))
		for i := range b {
			b[i] = 'x'
		}
		if _, err := os.Stdout.Write(b); err != nil {
			fmt.Fprintln(os.Stderr, "probe:", err)
			os.Exit(1)
		}
	case "escape": // try to reach what a job must not; one line per attempt
		try := func(name string, err error) {
			if err != nil {
				fmt.Printf("%s: denied: %v\n", name, err)
			} else {
				fmt.Printf("%s: allowed\n", name)
			}
		}
		_, err := os.ReadFile("/in/data.txt")
		try("read /in/data.txt", err)
		_, err = os.ReadFile("/etc/passwd")
		try("read /etc/passwd", err)
		_, err = os.ReadFile("/in/../etc/passwd")
		try("read /in/../etc/passwd", err)
		_, err = os.ReadFile("../etc/passwd")
		try("read ../etc/passwd", err)
		err = os.WriteFile("/in/new.txt", []byte("x"), 0o644)
		try("write /in/new.txt", err)
		err = os.WriteFile("/in/data.txt", []byte("x"), 0o644)
		try("overwrite /in/data.txt", err)
		err = os.WriteFile("/tmp/new.txt", []byte("x"), 0o644)
		try("write /tmp/new.txt", err)
		c, err := net.Dial("tcp", os.Args[2])
		if err == nil {
			c.Close()
		}
		try("dial "+os.Args[2], err)
		// Go's net package on wasip1 answers Dial and Listen from an in-process
		// fake network, so ask WASI itself: sock_accept is the only way a wasip1
		// module gets a socket, and only from a preopened listening one.
		try("sock_accept on fds 0-15", sockAcceptAny())
		if len(os.Environ()) > 0 {
			try("environment", nil)
		} else {
			try("environment", fmt.Errorf("empty"))
		}
	case "entropy": // what could differ between two runs: clocks and random bytes
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			fmt.Fprintln(os.Stderr, "probe:", err)
			os.Exit(1)
		}
		fmt.Printf("now %d\nrandom %x\n", time.Now().UnixNano(), b)
	case "serve": // a service (sandbox/serve.go): answers each request framed
		serve()
	default:
		fmt.Fprintln(os.Stderr, "probe: unknown mode", os.Args[1])
		os.Exit(64)
	}
}

// serve answers each request (4-byte big-endian length, bytes) with a response in the
// same framing: "count" answers how many requests it has seen (it keeps state),
// "crash" traps, "exit" exits with code 3, "big N" answers N bytes, "hang" never
// answers, "spin N" burns N million rounds of CPU first; anything else is echoed upper-cased.
func serve() {
	var n [4]byte
	seen := 0
	for {
		if _, err := io.ReadFull(os.Stdin, n[:]); err != nil {
			fmt.Fprintln(os.Stderr, "probe serve: end of requests:", err)
			return
		}
		req := make([]byte, binary.BigEndian.Uint32(n[:]))
		if _, err := io.ReadFull(os.Stdin, req); err != nil {
			fmt.Fprintln(os.Stderr, "probe serve:", err)
			os.Exit(1)
		}
		seen++
		var resp []byte
		switch f := strings.Fields(string(req)); {
		case len(f) == 1 && f[0] == "count":
			resp = []byte(strconv.Itoa(seen))
		case len(f) == 1 && f[0] == "crash":
			fmt.Fprintln(os.Stderr, "probe serve: crashing on purpose")
			var m map[string]int
			m["x"] = 1
		case len(f) == 1 && f[0] == "exit":
			os.Exit(3)
		case len(f) == 2 && f[0] == "big":
			k, _ := strconv.Atoi(f[1])
			resp = bytes.Repeat([]byte{'b'}, k)
		case len(f) == 1 && f[0] == "hang":
			io.ReadAll(os.Stdin) // answers nothing, ever
		case len(f) == 2 && f[0] == "spin":
			k, _ := strconv.Atoi(f[1])
			for range k * 1_000_000 {
				spun = spun*6364136223846793005 + 1442695040888963407
			}
			resp = []byte("spun")
		default:
			resp = bytes.ToUpper(req)
		}
		out := binary.BigEndian.AppendUint32(nil, uint32(len(resp)))
		os.Stdout.Write(append(out, resp...))
	}
}
