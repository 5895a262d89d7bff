package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"unsafe"
)

// openPTY opens a pseudo-terminal pair: what the backtest writes to the slave, the
// master reads.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("pty: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Fatalf("pty unlock: %v", e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Fatalf("pty number: %v", e)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("pty slave: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// TestPowerBacktestProgressOnlyOnTerminal: the progress bar is drawn on a terminal
// and on nothing else: a file and a pipe as stderr get not a byte of it (it used to be
// written into both).
func TestPowerBacktestProgressOnlyOnTerminal(t *testing.T) {
	prices := filepath.Join(ercotData, "ercot-RTM-2019-02.csv.gz")
	backtest := func(stderr *os.File) error {
		var out bytes.Buffer
		args := []string{"power", "backtest", "--prices", prices, "--zone", "LZ_WEST", "--config", "../examples/site.toml"}
		return Run(context.Background(), args, os.Getenv, nil, &out, stderr)
	}
	// A regular file.
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := backtest(f); err != nil {
		t.Fatal(err)
	}
	if st, err := f.Stat(); err != nil || st.Size() != 0 {
		t.Errorf("stderr to a file: %d bytes written (%v), want none", st.Size(), err)
	}
	// A pipe.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	piped := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(pr); piped <- b }()
	err = backtest(pw)
	pw.Close()
	b := <-piped
	pr.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 0 {
		t.Errorf("stderr to a pipe: got %q, want nothing", b)
	}
	// A terminal.
	master, slave := openPTY(t)
	drawn := make(chan []byte, 1)
	go func() {
		var all []byte
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			all = append(all, buf[:n]...)
			if err != nil || bytes.Contains(all, []byte("100%")) {
				drawn <- all
				return
			}
		}
	}()
	if err := backtest(slave); err != nil {
		t.Fatal(err)
	}
	if got := <-drawn; !bytes.Contains(got, []byte("100%")) {
		t.Errorf("stderr to a terminal: no progress bar reaching 100%%: %q", got)
	}
}
