// Package regtest starts a real btcd on regtest for tests and for the demo: free loopback
// ports, a private data directory, a fixed test key for the mining address, and a process
// that is stopped (or killed) by its owner and never outlives the test that started it.
//
// btcd deletes its regtest chain at every start, so every Start and Restart begins at
// height 0; Start mines one block at once because btcd refuses getblocktemplate while
// its tip is older than 24 hours (the genesis block is from 2011).
package regtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/node"
)

// Timeouts of the node's life cycle.
const (
	// StartTimeout bounds the wait for btcd's RPC to answer after the process starts.
	StartTimeout = 30 * time.Second
	// StopTimeout bounds a graceful stop before the process is killed.
	StopTimeout = 15 * time.Second
	// pollInterval is how often a starting node is asked whether it is up.
	pollInterval = 25 * time.Millisecond
	// maxPortTries bounds retries when a picked port was taken before btcd bound it.
	maxPortTries = 3
	// logTail is how much of btcd's output is kept for error messages.
	logTail = 4096
)

// ErrNotFound is returned when no btcd binary is found.
var ErrNotFound = errors.New("regtest: btcd not found; run scripts/test or go install github.com/btcsuite/btcd@v0.26.2")

// Options configure a regtest node. The zero value works except Dir.
type Options struct {
	Dir        string       // data and log directory (required; created if missing)
	MiningAddr string       // address for generate's coinbases; TestAddress() when empty
	Logger     *slog.Logger // discards when nil
	Binary     string       // btcd executable; "btcd" on PATH when empty
	RPCUser    string       // "hashgrid" when empty
	RPCPass    string       // "regtest" when empty: the RPC listens on loopback only
	ExtraArgs  []string     // appended to btcd's command line
	// NoInitialBlock skips the block mined at start (then getblocktemplate answers -10).
	NoInitialBlock bool
}

// Node is a running (or stopped) btcd regtest process.
type Node struct {
	opts    Options
	bin     string
	log     *slog.Logger
	rpcAddr string
	p2pAddr string
	client  *node.Client

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	out  *tailBuffer
}

// Start starts btcd and returns once its RPC answers and (unless NoInitialBlock) one
// block is mined. ctx bounds the start only; the process runs until Stop or Kill.
func Start(ctx context.Context, opts Options) (*Node, error) {
	if opts.Dir == "" {
		return nil, errors.New("regtest: Options.Dir is required")
	}
	bin := opts.Binary
	if bin == "" {
		bin = "btcd"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, ErrNotFound
	}
	if opts.MiningAddr == "" {
		opts.MiningAddr = TestAddress()
	}
	if opts.RPCUser == "" {
		opts.RPCUser = "hashgrid"
	}
	if opts.RPCPass == "" {
		opts.RPCPass = "regtest"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("regtest: %w", err)
	}
	n := &Node{opts: opts, bin: path, log: opts.Logger.With("component", "regtest")}
	for try := 1; ; try++ {
		if n.rpcAddr, err = freePort(); err != nil {
			return nil, err
		}
		if n.p2pAddr, err = freePort(); err != nil {
			return nil, err
		}
		n.client, err = node.NewClient(n.RPCURL())
		if err != nil {
			return nil, fmt.Errorf("regtest: %w", err)
		}
		err = n.start(ctx)
		if err == nil {
			return n, nil
		}
		n.Kill()
		if try == maxPortTries || ctx.Err() != nil || !errors.Is(err, errExited) {
			return nil, err
		}
		n.log.Warn("btcd exited during start; retrying on other ports", "err", err)
	}
}

// StartT starts a node for a test, in a temporary directory, and stops it when the test
// ends. A missing btcd fails the test: the regtest tests are part of the suite.
func StartT(tb testing.TB, opts ...func(*Options)) *Node {
	tb.Helper()
	o := Options{Dir: tb.TempDir()}
	for _, f := range opts {
		f(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout+10*time.Second)
	defer cancel()
	n, err := Start(ctx, o)
	if err != nil {
		tb.Fatalf("regtest.Start: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("btcd output (tail):\n%s", n.Output())
		}
		if err := n.Stop(); err != nil {
			tb.Logf("regtest: stop: %v", err)
		}
	})
	return n
}

var errExited = errors.New("btcd exited")

func (n *Node) start(ctx context.Context) error {
	args := []string{
		"--regtest", "--notls",
		"--rpclisten=" + n.rpcAddr,
		"--rpcuser=" + n.opts.RPCUser,
		"--rpcpass=" + n.opts.RPCPass,
		"--listen=" + n.p2pAddr,
		"--nodnsseed", "--nostalldetect",
		"--datadir=" + filepath.Join(n.opts.Dir, "data"),
		"--logdir=" + filepath.Join(n.opts.Dir, "logs"),
		"-C", os.DevNull,
		"--miningaddr=" + n.opts.MiningAddr,
		"--rpcmaxclients=100",
	}
	args = append(args, n.opts.ExtraArgs...)
	cmd := exec.Command(n.bin, args...)
	out := &tailBuffer{max: logTail}
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("regtest: start btcd: %w", err)
	}
	done := make(chan struct{})
	n.mu.Lock()
	n.cmd, n.done, n.out = cmd, done, out
	n.mu.Unlock()
	go func() {
		// The process's reaper: Stop and Kill wait for done.
		_ = cmd.Wait()
		close(done)
	}()
	n.log.Info("btcd started", "pid", cmd.Process.Pid, "rpc", n.rpcAddr, "p2p", n.p2pAddr)

	ctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	var lastErr error
	for {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		_, lastErr = n.client.ChainInfo(pctx)
		pcancel()
		if lastErr == nil {
			break
		}
		select {
		case <-done:
			return fmt.Errorf("regtest: %w: %s\n%s", errExited, cmd.ProcessState, out.String())
		case <-ctx.Done():
			return fmt.Errorf("regtest: btcd RPC did not answer within %s: %v", StartTimeout, lastErr)
		case <-time.After(pollInterval):
		}
	}
	if n.opts.NoInitialBlock {
		return nil
	}
	if _, err := n.client.Generate(ctx, 1); err != nil {
		return fmt.Errorf("regtest: first block: %w", err)
	}
	return nil
}

// RPCURL returns http://USER:PASS@127.0.0.1:PORT of the node's RPC.
func (n *Node) RPCURL() string {
	return "http://" + n.opts.RPCUser + ":" + n.opts.RPCPass + "@" + n.rpcAddr
}

// RPCAddr returns the RPC's host:port.
func (n *Node) RPCAddr() string { return n.rpcAddr }

// P2PAddr returns the peer-to-peer listener's host:port.
func (n *Node) P2PAddr() string { return n.p2pAddr }

// Client returns an RPC client for the node.
func (n *Node) Client() *node.Client { return n.client }

// Output returns the tail of btcd's standard output and error.
func (n *Node) Output() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.out == nil {
		return ""
	}
	return n.out.String()
}

// Running reports whether the process is alive.
func (n *Node) Running() bool {
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Kill kills the process at once (as a crash would) and waits for it to exit.
func (n *Node) Kill() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Stop asks btcd to shut down (SIGINT), waits up to StopTimeout, then kills it. Stopping
// a stopped node is a no-op.
func (n *Node) Stop() error {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil && !errors.Is(err, os.ErrProcessDone) {
		n.Kill()
		return fmt.Errorf("regtest: interrupt btcd: %w", err)
	}
	select {
	case <-done:
		n.log.Info("btcd stopped")
		return nil
	case <-time.After(StopTimeout):
		n.Kill()
		return fmt.Errorf("regtest: btcd did not stop within %s; killed", StopTimeout)
	}
}

// Restart kills the process if it runs and starts it again on the same ports. btcd
// deletes its regtest chain at start, so the chain begins again from height 0 (plus the
// first block unless NoInitialBlock).
func (n *Node) Restart(ctx context.Context) error {
	n.Kill()
	var err error
	// The old process's sockets are closed once it exited; a port can still be taken by
	// someone else in between, which start reports as an exit.
	for try := 1; try <= maxPortTries; try++ {
		if err = n.start(ctx); err == nil || !errors.Is(err, errExited) {
			return err
		}
		n.Kill()
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
	return err
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("regtest: pick a port: %w", err)
	}
	addr := l.Addr().(*net.TCPAddr)
	_ = l.Close()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(addr.Port)), nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}
