// Command job is the program the tests of compute/oci and compute/provider run
// inside OCI containers, built static (CGO_ENABLED=0) and pushed as an image. With no
// arguments it classifies the digits on its standard input with compute/model, as
// the WebAssembly digits program does; the arguments pick other behaviours that
// probe the container's walls and limits.
package main

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashgrid/hashgrid/compute/model"
)

func main() {
	if len(os.Args) < 2 {
		if err := model.Default().Classify(os.Stdout, os.Stdin); err != nil {
			fmt.Fprintln(os.Stderr, "job:", err)
			os.Exit(1)
		}
		return
	}
	arg := ""
	if len(os.Args) > 2 {
		arg = os.Args[2]
	}
	switch os.Args[1] {
	case "exit": // exit N
		n, _ := strconv.Atoi(arg)
		fmt.Println("exiting", n)
		os.Exit(n)
	case "alloc": // alloc MiB: allocate and touch that much memory
		n, _ := strconv.Atoi(arg)
		var keep [][]byte
		for range n {
			b := make([]byte, 1<<20)
			for i := range b {
				b[i] = 1
			}
			keep = append(keep, b)
		}
		fmt.Println("allocated", len(keep), "MiB")
	case "spin": // spin DURATION THREADS: keep THREADS cores busy for DURATION of wall time
		d, _ := time.ParseDuration(arg)
		threads := 1
		if len(os.Args) > 3 {
			threads, _ = strconv.Atoi(os.Args[3])
		}
		runtime.GOMAXPROCS(threads + 1)
		done := make(chan int)
		end := time.Now().Add(d)
		for range threads {
			go func() {
				x := 0
				for time.Now().Before(end) {
					for i := range 100000 {
						x += i
					}
				}
				done <- x
			}()
		}
		for range threads {
			<-done
		}
		fmt.Println("spun")
	case "dial": // dial HOST:PORT
		c, err := net.DialTimeout("tcp", arg, 2*time.Second)
		if err != nil {
			fmt.Println("dial failed:", err)
			os.Exit(1)
		}
		c.Close()
		fmt.Println("connected")
	case "ifaces":
		ifs, err := net.Interfaces()
		if err != nil {
			fmt.Println("interfaces:", err)
			os.Exit(1)
		}
		var names []string
		for _, i := range ifs {
			names = append(names, i.Name)
		}
		fmt.Println(strings.Join(names, ","))
	case "write": // write PATH
		if err := os.WriteFile(arg, []byte("x"), 0o644); err != nil {
			fmt.Println("write failed:", err)
			os.Exit(1)
		}
		fmt.Println("written")
	case "id":
		fmt.Println(os.Getuid(), os.Getgid())
	case "flood": // write to stdout without end
		b := []byte(strings.Repeat("y", 4096))
		for {
			if _, err := os.Stdout.Write(b); err != nil {
				os.Exit(1)
			}
		}
	case "status": // the process's privileges as the kernel sees them
		b, err := os.ReadFile("/proc/self/status")
		if err != nil {
			fmt.Println("status:", err)
			os.Exit(1)
		}
		for _, line := range strings.Split(string(b), "\n") {
			for _, k := range []string{"CapEff:", "CapBnd:", "NoNewPrivs:", "Seccomp:"} {
				if strings.HasPrefix(line, k) {
					fmt.Println(strings.Join(strings.Fields(line), " "))
				}
			}
		}
	case "unshare": // try to make a user namespace (no privilege needed without seccomp)
		if err := syscall.Unshare(syscall.CLONE_NEWUSER); err != nil {
			fmt.Println("unshare failed:", err)
			os.Exit(1)
		}
		fmt.Println("unshared")
	case "ls": // ls DIR
		des, err := os.ReadDir(arg)
		if err != nil {
			fmt.Println("ls failed:", err)
			os.Exit(1)
		}
		for _, d := range des {
			fmt.Println(d.Name())
		}
	default:
		fmt.Fprintln(os.Stderr, "job: unknown command", os.Args[1])
		os.Exit(2)
	}
}
