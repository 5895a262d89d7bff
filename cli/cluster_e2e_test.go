package cli

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/alert"
	"github.com/hashgrid/hashgrid/api"
	"github.com/hashgrid/hashgrid/ledger"
	"github.com/hashgrid/hashgrid/miner"
	"github.com/hashgrid/hashgrid/natsstream"
	"github.com/hashgrid/hashgrid/node/regtest"
	"github.com/hashgrid/hashgrid/payout"
	"github.com/hashgrid/hashgrid/postgres"
	"github.com/hashgrid/hashgrid/postgres/pgtest"
	"github.com/hashgrid/hashgrid/sqlite"
)

// proc is one hashgrid or nats-server process of the cluster test, its output in a
// file that the test shows when it fails.
type proc struct {
	name string
	bin  string
	args []string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

func startProc(t *testing.T, dir, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, bin: bin, args: args, log: filepath.Join(dir, name+".log")}
	p.start(t)
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("%s log (tail):\n%s", p.name, tail(string(b), 4000))
			// $HASHGRID_TEST_LOGS keeps the whole logs of a failed run.
			if keep := os.Getenv("HASHGRID_TEST_LOGS"); keep != "" {
				os.MkdirAll(keep, 0o755)
				os.WriteFile(filepath.Join(keep, p.name+".log"), b, 0o644)
			}
		}
	})
	return p
}

func (p *proc) start(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p.cmd = exec.Command(p.bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	p.done = make(chan struct{})
	go func() { p.cmd.Wait(); close(p.done) }()
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill is kill -9.
func (p *proc) kill() {
	if p.running() {
		p.cmd.Process.Kill()
		<-p.done
	}
}

// stop asks the process to stop (SIGTERM) and waits for it.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if !p.running() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.kill()
		t.Errorf("%s did not stop on SIGTERM within 30 s", p.name)
	}
}

// natsServerBinary is the nats-server the cluster test runs: $HASHGRID_TEST_NATS_SERVER
// (scripts/deps.sh need_nats sets it) or one on PATH or in /usr/sbin (Debian's).
func natsServerBinary(t *testing.T) string {
	if b := os.Getenv("HASHGRID_TEST_NATS_SERVER"); b != "" {
		return b
	}
	if b, err := exec.LookPath("nats-server"); err == nil {
		return b
	}
	if _, err := os.Stat("/usr/sbin/nats-server"); err == nil {
		return "/usr/sbin/nats-server"
	}
	t.Skip("no nats-server: run scripts/test, which provides one (scripts/deps.sh need_nats)")
	return ""
}

// startNATSCluster starts n clustered JetStream servers on loopback ports and waits
// until JetStream answers; it returns the servers and their client URLs.
func startNATSCluster(t *testing.T, bin, dir string, n int) ([]*proc, []string) {
	t.Helper()
	client := make([]string, n)
	routes := make([]string, n)
	for i := range n {
		client[i] = freeAddr(t)
		routes[i] = "nats-route://" + freeAddr(t)
	}
	var procs []*proc
	var urls []string
	for i := range n {
		name := fmt.Sprintf("nats%d", i+1)
		var others []string
		for j, r := range routes {
			if j != i {
				others = append(others, r)
			}
		}
		conf := fmt.Sprintf("server_name: %s\nlisten: %q\njetstream { store_dir: %q }\ncluster { name: hashgrid\n listen: %q\n routes: [%s] }\n",
			name, client[i], filepath.Join(dir, name), strings.TrimPrefix(routes[i], "nats-route://"), strings.Join(others, ", "))
		path := filepath.Join(dir, name+".conf")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, startProc(t, dir, name, bin, "-c", path))
		urls = append(urls, "nats://"+client[i])
	}
	js := jetStreamOf(t, urls...)
	waitFor(t, 60*time.Second, "the JetStream cluster", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err == nil
	})
	return procs, urls
}

// jetStreamOf connects to the NATS servers at urls until the test ends.
func jetStreamOf(t *testing.T, urls ...string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(strings.Join(urls, ","), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// shareStreamInfo asks for the share stream's state and cluster.
func shareStreamInfo(js jetstream.JetStream) (*jetstream.StreamInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, natsstream.DefaultStreamName)
	if err != nil {
		return nil, err
	}
	return st.Info(ctx)
}

// buildHashgrid builds this checkout's hashgrid binary.
func buildHashgrid(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "hashgrid")
	build := exec.Command("go", "build", "-o", bin, "./cmd/hashgrid")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// httpStatus is the status of GET url, 0 if nothing answered.
func httpStatus(url string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestClusterEndToEnd runs hashgrid across processes as issue 16 lays it out: btcd
// regtest, a three-node NATS JetStream cluster (replicas 3), PostgreSQL, two
// front-ends and two accounting processes, under PPLNS, with miners on both
// front-ends that fail over to the other. It checks that blocks are found and
// credited and that the API shows every worker; kills -9 a front-end (its miners go
// on at the other), kills -9 the leading accounting process (the other takes over),
// stops a NATS node and starts it again (it catches up); then that every share a
// miner was told was accepted is in PostgreSQL exactly once, and that the PPLNS
// credits of every block equal those a one-process SQLite pool computes from the same
// shares.
func TestClusterEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts btcd, three nats-servers, PostgreSQL and four hashgrid processes")
	}
	natsBin := natsServerBinary(t)
	pgURL := pgtest.FreshDatabase(t)
	btcd := regtest.StartT(t)
	bin := buildHashgrid(t)
	dir := t.TempDir()
	natsProcs, natsURLs := startNATSCluster(t, natsBin, dir, 3)

	payoutAddr := regtest.TestAddress()
	common := []string{"--network", "regtest", "--node", btcd.RPCURL(), "--payout-address", payoutAddr,
		"--payout-scheme", "pplns", "--pplns-window", fmt.Sprint(e2eWindowN), "--pool-fee-bps", fmt.Sprint(e2eFeeBps),
		"--nats-replicas", "3", "--poll-interval", "100ms", "--log-level", "debug"}
	for _, u := range natsURLs {
		common = append(common, "--nats", u)
	}
	args := func(extra ...string) []string { return append(append([]string{"pool"}, common...), extra...) }

	// Two accounting processes: one leads, the other waits.
	acctAPI := []string{freeAddr(t), freeAddr(t)}
	var acct []*proc
	for i, a := range acctAPI {
		d := filepath.Join(dir, fmt.Sprintf("acct%d", i+1))
		acct = append(acct, startProc(t, dir, fmt.Sprintf("acct%d", i+1), bin,
			args("--role", "accounting", "--postgres", pgURL, "--api", a, "--data", d)...))
	}
	leader := func() int {
		for i, a := range acctAPI {
			if acct[i].running() && httpStatus("http://"+a+"/api/v1/pool") == http.StatusOK {
				return i
			}
		}
		return -1
	}
	waitFor(t, 60*time.Second, "an accounting leader", func() bool { return leader() >= 0 })
	lead := leader()
	base := func() string { return "http://" + acctAPI[leader()] }
	standby := 1 - lead
	// The second process may still be starting (its port opens after it reaches
	// NATS and the node); once it answers, it must answer as the standby.
	var standbyStatus int
	waitFor(t, 60*time.Second, "the second accounting process answering", func() bool {
		standbyStatus = httpStatus("http://" + acctAPI[standby] + "/api/v1/pool")
		return standbyStatus != 0
	})
	if standbyStatus != http.StatusServiceUnavailable {
		t.Fatalf("the second accounting process answers %d, want 503 (standby)", standbyStatus)
	}

	// Two front-ends.
	feStratum := []string{freeAddr(t), freeAddr(t)}
	var fe []*proc
	for i, s := range feStratum {
		d := filepath.Join(dir, fmt.Sprintf("fe%d", i+1))
		fe = append(fe, startProc(t, dir, fmt.Sprintf("fe%d", i+1), bin,
			args("--role", "frontend", "--frontend", fmt.Sprint(i+1), "--stratum", s, "--api", freeAddr(t), "--data", d, "--ack", "replicated")...))
	}
	for i, s := range feStratum {
		waitFor(t, 60*time.Second, "front-end "+fmt.Sprint(i+1)+" listening", func() bool {
			c, err := net.DialTimeout("tcp", s, time.Second)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
	}

	// Four miners, two on each front-end, each failing over to the other.
	addrs := []string{e2eAddress(t, 1), e2eAddress(t, 2), e2eAddress(t, 3), e2eAddress(t, 4)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var miners []*miner.Miner
	var wg sync.WaitGroup
	for i, a := range addrs {
		home, other := feStratum[i%2], feStratum[1-i%2]
		m, err := miner.New(miner.Config{URL: "stratum+tcp://" + home, Failover: []string{"stratum+tcp://" + other},
			User: a + ".w", Password: "d=" + fmt.Sprint(e2eShareDiff), MaxRetryWait: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		miners = append(miners, m)
		wg.Go(func() { m.Run(ctx) })
	}
	stopMiners := sync.OnceFunc(func() { cancel(); wg.Wait() })
	defer stopMiners()

	accepted := func() (n uint64) {
		for _, m := range miners {
			n += m.Stats().Accepted
		}
		return n
	}
	storedShares := func() uint64 {
		var p api.PoolInfo
		if i := leader(); i < 0 || getJSON(t, base()+"/api/v1/pool", &p) != http.StatusOK {
			return 0
		}
		return p.SharesAccepted
	}
	acceptedBlocks := func() int {
		if leader() < 0 {
			return 0
		}
		var bl []api.BlockInfo
		getJSON(t, base()+"/api/v1/blocks", &bl)
		n := 0
		for _, b := range bl {
			if b.Status == "accepted" || b.Status == "confirmed" {
				n++
			}
		}
		return n
	}
	workersSeen := func() bool {
		for _, a := range addrs {
			var ai api.AddressInfo
			if getJSON(t, base()+"/api/v1/workers/"+a, &ai) != http.StatusOK || ai.Accepted == 0 {
				return false
			}
		}
		return true
	}
	waitFor(t, 3*time.Minute, "blocks found on both front-ends, every worker in the API", func() bool {
		return acceptedBlocks() >= 5 && workersSeen()
	})
	t.Logf("phase 1: %d blocks, %d shares accepted by miners, %d stored", acceptedBlocks(), accepted(), storedShares())

	// kill -9 front-end 1: its miners go on at front-end 2.
	fe[0].kill()
	for i := 0; i < len(miners); i += 2 {
		m := miners[i]
		before := m.Stats().Accepted
		waitFor(t, 60*time.Second, "miner "+fmt.Sprint(i)+" mining at front-end 2", func() bool {
			st := m.Stats()
			return st.Connects >= 2 && st.Accepted >= before+5
		})
	}
	t.Logf("phase 2: front-end 1 killed; miners failed over; %d accepted", accepted())

	// kill -9 the leading accounting process: the other takes over.
	killed := time.Now()
	acct[lead].kill()
	waitFor(t, 30*time.Second, "the standby accounting process to lead", func() bool { return leader() == standby })
	takeover := time.Since(killed)
	t.Logf("phase 3: leader killed; the standby led after %s", takeover.Round(10*time.Millisecond))
	// Its supervisor starts it again: it waits as the standby.
	acct[lead].start(t)
	waitFor(t, 30*time.Second, "the restarted process to answer as standby", func() bool {
		return httpStatus("http://"+acctAPI[lead]+"/api/v1/pool") == http.StatusServiceUnavailable
	})
	before := storedShares()
	waitFor(t, 60*time.Second, "the new leader storing shares", func() bool { return storedShares() > before+10 })

	// Stop one NATS node, the share stream's leader (the hardest case: a new leader is
	// elected, and the accounting's read cursor, which lived there, is gone): mining
	// and accounting go on; start it again: it catches up.
	js := jetStreamOf(t, natsURLs...)
	down := -1
	info, err := shareStreamInfo(js)
	if err != nil || info.Cluster == nil {
		t.Fatalf("share stream info: %v", err)
	}
	fmt.Sscanf(info.Cluster.Leader, "nats%d", &down)
	if down--; down < 0 || down >= len(natsProcs) {
		t.Fatalf("share stream leader %q", info.Cluster.Leader)
	}
	natsProcs[down].stop(t)
	minedBefore, storedBefore := accepted(), storedShares()
	waitFor(t, 60*time.Second, "mining and accounting with a NATS node down", func() bool {
		return accepted() > minedBefore+20 && storedShares() > storedBefore+20
	})
	natsProcs[down].start(t)
	js3 := jetStreamOf(t, natsURLs[down])
	waitFor(t, 60*time.Second, "the restarted NATS node's replica current", func() bool {
		info, err := shareStreamInfo(js3)
		if err != nil || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			return false
		}
		peers := map[string]bool{info.Cluster.Leader: true}
		for _, r := range info.Cluster.Replicas {
			if !r.Current || r.Offline {
				return false
			}
			peers[r.Name] = true
		}
		return peers[fmt.Sprintf("nats%d", down+1)]
	})
	t.Logf("phase 4: NATS node %d, the share stream's leader, stopped and restarted; its replica is current", down+1)

	// Stop mining; let the books catch up.
	stopMiners()
	fe[1].stop(t)
	pg, err := postgres.Open(context.Background(), pgURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	// The number of the stream's last record: everything published must reach the
	// store.
	info, err = shareStreamInfo(js3)
	if err != nil {
		t.Fatal(err)
	}
	streamLast := natsstream.MessageEnd(info.State.LastSeq)
	waitFor(t, 60*time.Second, "the store to hold the whole share stream", func() bool {
		n, err := pg.LastSeq(context.Background())
		return err == nil && n >= streamLast
	})

	// Every share a miner was told was accepted is in PostgreSQL exactly once. A
	// share whose answer the killed front-end never sent may be there too: the miner
	// counted it as an error, not as accepted.
	var all []hashgrid.Share
	for after := uint64(0); ; {
		page, err := pg.Shares(context.Background(), after, streamLast, 10_000)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		after = page[len(page)-1].Seq
	}
	perAddr := map[string]uint64{}
	seen := map[[32]byte]bool{}
	for _, s := range all {
		if seen[s.Hash] {
			t.Errorf("share %x stored twice (seq %d)", s.Hash, s.Seq)
		}
		seen[s.Hash] = true
		perAddr[s.Address]++
	}
	for i, m := range miners {
		st := m.Stats()
		got := perAddr[addrs[i]]
		if got < st.Accepted || got > st.Accepted+st.Errors {
			t.Errorf("miner %d: told %d accepted (%d unanswered), PostgreSQL holds %d", i, st.Accepted, st.Errors, got)
		}
		t.Logf("miner %d: %+v; stored %d", i, st, got)
	}

	// Every accepted block credited; then the same shares and windows in a
	// one-process SQLite pool give the same credits.
	waitFor(t, 60*time.Second, "every accepted block credited", func() bool {
		var bl []api.BlockInfo
		getJSON(t, base()+"/api/v1/blocks", &bl)
		for _, b := range bl {
			if b.Status != "accepted" && b.Status != "confirmed" {
				continue
			}
			var v payout.WindowView
			if getJSON(t, base()+"/api/v1/blocks/"+b.Hash+"/window?limit=1", &v) != http.StatusOK || v.Credit == nil {
				return false
			}
		}
		return true
	})
	// A miner's own check of a block's credit, against the leader's API and the chain.
	var bl []api.BlockInfo
	getJSON(t, base()+"/api/v1/blocks", &bl)
	verified := 0
	for _, b := range bl {
		var v payout.WindowView
		if b.Status != "accepted" || getJSON(t, base()+"/api/v1/blocks/"+b.Hash+"/window?limit=1", &v) != http.StatusOK || v.Credit == nil || v.Params.Count == 0 {
			continue // orphaned, or found before the first window was committed
		}
		for _, a := range addrs[:2] {
			out, err := exec.Command(bin, "verify", "--block", b.Hash, "--address", a, "--api", base(), "--node", btcd.RPCURL()).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "ok: the credit matches") {
				t.Errorf("verify %s %s: %v\n%s", b.Hash, a, err, out)
			}
		}
		if verified++; verified == 3 {
			break
		}
	}
	if verified == 0 {
		t.Error("no credited block to verify")
	}
	for _, p := range acct {
		p.stop(t)
	}
	compareWithSQLite(t, pgURL, pg, all, btcd, payoutAddr)
}

// compareWithSQLite recomputes the cluster's PPLNS credits in a one-process SQLite
// pool: the same shares in a SQLite store, the same blocks and the windows their
// coinbases commit to, a payout service on a SQLite ledger; every miner's balances
// must equal the PostgreSQL ledger's.
func compareWithSQLite(t *testing.T, pgURL string, pg *postgres.Store, shares []hashgrid.Share, btcd *regtest.Node, poolAddr string) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	store, err := sqlite.Open(filepath.Join(dir, "hashgrid.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for i := 0; i < len(shares); i += 5000 {
		if err := store.AddShares(ctx, shares[i:min(i+5000, len(shares))]); err != nil {
			t.Fatal(err)
		}
	}
	blocks, err := pg.Blocks(ctx, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	pgState, err := postgres.OpenPayoutState(ctx, pgURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pgState.Close()
	state, err := payout.OpenSQLiteState(filepath.Join(dir, "payout.db"))
	if err != nil {
		t.Fatal(err)
	}
	chain := chainBlocks{btcd.Client()}
	windows := 0
	for _, b := range blocks {
		if err := store.PutBlock(ctx, b); err != nil {
			t.Fatal(err)
		}
		if b.Status != hashgrid.BlockAccepted && b.Status != hashgrid.BlockConfirmed {
			continue
		}
		blk, err := chain.Block(ctx, chainhash.Hash(b.Hash))
		if err != nil {
			t.Fatal(err)
		}
		var scripts [][]byte
		for _, o := range blk.Transactions[0].TxOut {
			scripts = append(scripts, o.PkScript)
		}
		c, ok := payout.FindCommitment(scripts)
		if !ok {
			continue
		}
		p, err := pgState.Window(ctx, c)
		if err != nil {
			t.Fatalf("block %x: window %s: %v", b.Hash, c, err)
		}
		if err := state.PutWindow(ctx, p, time.Now().UnixNano()); err != nil {
			t.Fatal(err)
		}
		windows++
	}
	if windows == 0 {
		t.Fatal("no block commits to a window")
	}
	led, err := ledger.Open(filepath.Join(dir, "ledger.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	cfg := PoolConfig{Network: "regtest", PayoutAddress: poolAddr, PayoutScheme: "pplns", PPLNSWindow: e2eWindowN, PoolFeeBps: e2eFeeBps, Data: dir}
	pc, err := cfg.payoutConfig(&chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := payout.OpenWith(pc, state, led, store, chain)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if err := svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	pgLed, err := postgres.OpenLedger(ctx, pgURL, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pgLed.Close()
	want, err := led.Balances(ctx, "miner:")
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgLed.Balances(ctx, "miner:")
	if err != nil {
		t.Fatal(err)
	}
	if len(want) == 0 {
		t.Fatal("the SQLite pool credited no miner")
	}
	for acct, v := range want {
		if got[acct] != v {
			t.Errorf("%s: PostgreSQL ledger %d, one-process SQLite pool %d", acct, got[acct], v)
		}
	}
	for acct, v := range got {
		if _, ok := want[acct]; !ok && v != 0 {
			t.Errorf("%s: PostgreSQL ledger %d, not in the SQLite pool's", acct, v)
		}
	}
	if err := pgLed.Check(ctx); err != nil {
		t.Error(err)
	}
	t.Logf("PPLNS credits of %d blocks (%d windows, %d shares) equal in PostgreSQL and SQLite: %d miner accounts", len(blocks), windows, len(shares), len(want))
}

// TestPoolPostgresEndToEnd runs the one-process pool with --postgres and no NATS, as an
// operator who only wants a real database would: under PPLNS on btcd, blocks found are
// credited, every share the miner was told was accepted is in PostgreSQL, the alerts'
// outbox is there too, and the data directory holds no SQLite books.
func TestPoolPostgresEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts btcd and uses PostgreSQL")
	}
	pgURL := pgtest.FreshDatabase(t)
	btcd := regtest.StartT(t)
	data := t.TempDir()
	r, stopPool := startPool(t, PoolConfig{
		Nodes: []string{btcd.RPCURL()}, Network: "regtest", PayoutAddress: regtest.TestAddress(),
		Stratum: "127.0.0.1:0", API: "127.0.0.1:0", Data: data, Tag: "/pg-e2e/", Postgres: pgURL, LogLevel: "debug",
		PollInterval: 100 * time.Millisecond, TrackInterval: 300 * time.Millisecond,
		PayoutScheme: "pplns", PPLNSWindow: e2eWindowN, PoolFeeBps: e2eFeeBps,
	})
	base := "http://" + r.API
	addr := e2eAddress(t, 7)
	m, err := miner.New(miner.Config{URL: "stratum+tcp://" + r.Stratum, User: addr + ".pg", Password: "d=" + fmt.Sprint(e2eShareDiff), MaxRetryWait: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	credited := func() int {
		var bl []api.BlockInfo
		getJSON(t, base+"/api/v1/blocks", &bl)
		n := 0
		for _, b := range bl {
			var v payout.WindowView
			if b.Status == "accepted" && getJSON(t, base+"/api/v1/blocks/"+b.Hash+"/window?limit=1", &v) == http.StatusOK && v.Credit != nil && v.Params.Count > 0 {
				n++
			}
		}
		return n
	}
	waitFor(t, 2*time.Minute, "blocks credited", func() bool { return credited() >= 3 })
	cancel()
	<-done
	st := m.Stats()
	waitFor(t, 30*time.Second, "every accepted share in PostgreSQL", func() bool {
		var ai api.AddressInfo
		return getJSON(t, base+"/api/v1/workers/"+addr, &ai) == http.StatusOK && ai.Accepted >= st.Accepted
	})
	stopPool()

	pg, err := postgres.Open(context.Background(), pgURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	ws, err := pg.Workers(context.Background(), addr)
	if err != nil || len(ws) != 1 || ws[0].Accepted != st.Accepted {
		t.Errorf("PostgreSQL workers of %s: %+v (%v); the miner was told %d accepted", addr, ws, err, st.Accepted)
	}
	led, err := postgres.OpenLedger(context.Background(), pgURL, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	bals, err := led.Balances(context.Background(), "miner:"+addr)
	if err != nil || len(bals) == 0 {
		t.Errorf("no ledger credit for %s in PostgreSQL: %v %v", addr, bals, err)
	}
	if err := led.Check(context.Background()); err != nil {
		t.Error(err)
	}
	ob, err := postgres.OpenAlertOutbox(context.Background(), pgURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	recent, err := ob.Recent(context.Background(), 100)
	found := 0
	for _, e := range recent {
		if e.Kind == string(alert.BlockFound) {
			found++
		}
	}
	if err != nil || found == 0 {
		t.Errorf("block_found alerts in PostgreSQL's outbox: %d of %d (%v)", found, len(recent), err)
	}
	for _, f := range []string{"hashgrid.db", "ledger.db", "payout.db", "alerts.db"} {
		if _, err := os.Stat(filepath.Join(data, f)); err == nil {
			t.Errorf("%s in the data directory of a --postgres pool", f)
		}
	}
}
