package cli

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/sqlite"
)

// runCLI runs hashgrid with args and returns stdout, stderr and the error.
func runCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := Run(context.Background(), args, func(string) string { return "" }, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), err
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, stderr, err := runCLI(t, args...)
	if err != nil {
		t.Fatalf("hashgrid %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return out
}

func TestRegistryCommand(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	d := "-data=" + data

	out := mustRun(t, "registry", "init", d, "-operator=op1", "-name=Nordlys Compute AS", "-country=NO")
	m := regexp.MustCompile(`public key ([0-9a-f]{64})`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("init printed no public key:\n%s", out)
	}
	pub := m[1]
	if _, _, err := runCLI(t, "registry", "init", d); err == nil {
		t.Error("a second init over an existing log succeeded")
	}
	mustRun(t, "registry", "site", "add", d, "-id=s1", "-operator=op1", "-location=Alta", "-grid=Arva 22 kV", "-capacity-kw=200")
	mustRun(t, "registry", "device", "add", d, "-id=asic-a", "-site=s1", "-group=miners", "-kind=asic", "-count=4", "-rated-w=3250", "-pool-address=bcrt1qexample", "-workers=rack1-*")
	mustRun(t, "registry", "device", "add", d, "-id=gpu-a", "-site=s1", "-group=render", "-kind=gpu", "-count=2", "-rated-w=2000", "-gpus=4")
	_, stderr, err := runCLI(t, "registry", "device", "add", d, "-id=gpu-a", "-site=s1", "-group=render", "-kind=gpu", "-count=2", "-rated-w=2000", "-gpus=4")
	if err == nil || !strings.Contains(stderr, `duplicate device "gpu-a"`) {
		t.Errorf("duplicate device: got %v, stderr %q", err, stderr)
	}
	mustRun(t, "registry", "workload", "add", d, "-site=s1", "-group=miners", "-class=pow-mining", "-from=2026-03-02T00:00:00Z")
	_, stderr, err = runCLI(t, "registry", "workload", "add", d, "-site=s1", "-group=render", "-class=rendering", "-from=2026-03-02T00:00:00Z")
	if err == nil || !strings.Contains(stderr, `unknown workload class "rendering"`) {
		t.Errorf("class only in the example file, without -classes: got %v, stderr %q", err, stderr)
	}
	mustRun(t, "registry", "workload", "add", d, "-site=s1", "-group=render", "-class=rendering", "-from=2026-03-02T00:00:00Z", "-classes=../examples/classes.json")

	energy := `{"start":"2026-03-02T10:00:00Z","end":"2026-03-02T11:00:00Z","site":"s1","group":"miners","mode":"full","machines_on":4,"energy_wh":13000,"hashrate_ghs":416000}
{"start":"2026-03-02T10:00:00Z","end":"2026-03-02T11:00:00Z","site":"s1","group":"render","mode":"on","machines_on":2,"energy_wh":3600,"hashrate_ghs":0}
`
	if err := os.WriteFile(filepath.Join(data, "energy.jsonl"), []byte(energy), 0o644); err != nil {
		t.Fatal(err)
	}
	out = mustRun(t, "registry", "import-energy", d)
	if !strings.Contains(out, "2 added") {
		t.Errorf("import-energy: %q", out)
	}
	meter := filepath.Join(dir, "meter.csv")
	os.WriteFile(meter, []byte("meter_id,site,group,start,end,energy_wh\nmain,s1,,2026-03-02T10:00:00Z,2026-03-02T10:30:00Z,8300\nmain,s1,,2026-03-02T10:45:00Z,2026-03-02T11:00:00Z,4150\n"), 0o644)
	_, stderr, err = runCLI(t, "registry", "import-meter", d, "-file="+meter)
	if err == nil || !strings.Contains(stderr, "between line 2 and line 3") {
		t.Errorf("meter with a gap: got %v, stderr %q", err, stderr)
	}
	jobs := filepath.Join(dir, "jobs.jsonl")
	os.WriteFile(jobs, []byte(`{"job":"r1","device_group":"render","start":"2026-03-02T10:00:00Z","end":"2026-03-02T11:00:00Z","gpu_hours":7.5}`+"\n"), 0o644)
	mustRun(t, "registry", "import-jobs", d, "-file="+jobs, "-site=s1")

	out = mustRun(t, "registry", "report", d, "-site=s1", "-from=2026-03-02T10:00:00Z", "-to=2026-03-02T10:30:00Z")
	// No pool data imported yet: the miners' declaration has no share evidence.
	if !strings.Contains(out, "no_pool_evidence miners") {
		t.Errorf("report output lacks the missing pool evidence:\n%s", out)
	}

	// The pool's share store, with shares from the miners in the hour.
	dbPath := filepath.Join(dir, "pool.db")
	db, err := sqlite.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	var shares []hashgrid.Share
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	for i := range 120 {
		shares = append(shares, hashgrid.Share{Seq: uint64(i + 1), Time: t0.Add(time.Duration(i) * 30 * time.Second),
			Address: "bcrt1qexample", Worker: "rack1-01", JobID: "a", Diff: hashgrid.DiffFromFloat(4096), Actual: hashgrid.DiffFromFloat(5000)})
	}
	if err := db.AddShares(context.Background(), shares); err != nil {
		t.Fatal(err)
	}
	db.Close()
	out = mustRun(t, "registry", "import-pool", d, "-db="+dbPath, "-site=s1", "-from=2026-03-02T10:00:00Z", "-to=2026-03-02T11:00:00Z")
	if !strings.Contains(out, "1 workers") {
		t.Errorf("import-pool: %q", out)
	}
	out = mustRun(t, "registry", "report", d, "-site=s1", "-from=2026-03-02T10:00:00Z", "-to=2026-03-02T11:00:00Z")
	if !strings.Contains(out, "0 discrepancies") {
		t.Errorf("report of an honest site:\n%s", out)
	}
	rj := regexp.MustCompile(`(?m)^(.*\.json)$`).FindString(out)
	rh := strings.TrimSuffix(rj, ".json") + ".html"
	logPath := filepath.Join(data, "registry.jsonl")
	out = mustRun(t, "registry", "verify", "-log="+logPath, "-report="+rj, "-html="+rh, "-pubkey="+pub)
	if !strings.Contains(out, "log ok: 12 entries") || !strings.Contains(out, "html ok, in log") {
		t.Errorf("verify: %q", out)
	}

	// Change one byte of entry 4 (the first device's count) in a copy of the log.
	b, _ := os.ReadFile(logPath)
	bad := bytes.Replace(b, []byte(`"count":4`), []byte(`"count":5`), 1)
	badPath := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(badPath, bad, 0o644)
	_, stderr, err = runCLI(t, "registry", "verify", "-log="+badPath, "-pubkey="+pub)
	if ExitCode(err) != 1 || !strings.Contains(stderr, "entry 4 (line 4): content does not match its hash") {
		t.Errorf("tampered log: exit %d, stderr %q", ExitCode(err), stderr)
	}
	_, stderr, err = runCLI(t, "registry", "verify", "-report="+rj, "-pubkey="+strings.Repeat("ab", 32))
	if err == nil || !strings.Contains(stderr, "different signing key") {
		t.Errorf("report under another key: got %v, stderr %q", err, stderr)
	}
	if _, _, err := runCLI(t, "registry", "frobnicate"); ExitCode(err) != 2 {
		t.Errorf("unknown verb: exit %d, want 2", ExitCode(err))
	}

	// anchor refuses what it cannot use before it touches a node: a misread flag
	// must not send a transaction.
	keyFile := filepath.Join(dir, "btc.key")
	os.WriteFile(keyFile, []byte(strings.Repeat("11", 32)+"\n"), 0o600)
	node := "-node=http://u:p@127.0.0.1:1"
	utxo := "-utxo=" + strings.Repeat("ab", 32) + ":1"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{d, "-btc-key=" + keyFile, utxo}, "-node is required"},
		{[]string{d, node, utxo}, "-btc-key is required"},
		{[]string{d, node, "-btc-key=" + keyFile}, "-utxo is required"},
		{[]string{d, node, "-btc-key=" + keyFile, "-utxo=abc:1"}, "want TXID:VOUT"},
		{[]string{d, node, "-btc-key=" + keyFile, "-utxo=" + strings.Repeat("ab", 32)}, "want TXID:VOUT"},
		{[]string{d, node, "-coinbase"}, "-pool-data is required"},
		{[]string{d, node, "-coinbase", "-pool-data=" + filepath.Join(dir, "nowhere")}, "is not a directory"},
		{[]string{d, node, "-coinbase", "-pool-data=" + dir, utxo}, "-coinbase takes no -utxo"},
		{[]string{d, node, "-btc-key=" + keyFile, utxo, "-every=-1s"}, "-every not negative"},
	} {
		_, _, err := runCLI(t, append([]string{"registry", "anchor"}, tc.args...)...)
		if ExitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("anchor %v: got %v (exit %d), want a usage error ...%s...", tc.args, err, ExitCode(err), tc.want)
		}
	}
	badKey := filepath.Join(dir, "bad.key")
	os.WriteFile(badKey, []byte("not hex\n"), 0o600)
	if _, _, err := runCLI(t, "registry", "anchor", d, node, "-btc-key="+badKey, utxo); err == nil || !strings.Contains(err.Error(), "64 hex digits") {
		t.Errorf("anchor with a malformed key: %v", err)
	}
	// A report without an anchor fails verify against a node, before any call to it.
	if _, _, err := runCLI(t, "registry", "verify", "-report="+rj, "-pubkey="+pub, node); err == nil || !strings.Contains(err.Error(), "no anchor") {
		t.Errorf("verify -node of a report with no anchor: %v", err)
	}
}

func TestLoadChainFile(t *testing.T) {
	dir := t.TempDir()
	blk := wire.NewMsgBlock(wire.NewBlockHeader(4, &chainhash.Hash{1}, &chainhash.Hash{2}, 0x207fffff, 7))
	cb := wire.NewMsgTx(1)
	cb.AddTxIn(wire.NewTxIn(wire.NewOutPoint(&chainhash.Hash{}, wire.MaxPrevOutIndex), []byte{1, 2}, nil))
	cb.AddTxOut(wire.NewTxOut(1, []byte{0x51}))
	blk.AddTransaction(cb)
	var raw bytes.Buffer
	if err := blk.Serialize(&raw); err != nil {
		t.Fatal(err)
	}
	good := hex.EncodeToString(raw.Bytes())
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fc, err := loadChainFile(write("good.json", `{"blocks":[{"height":12,"hex":"`+good+`"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if h, err := fc.BlockHash(ctx, 12); err != nil || h != blk.BlockHash() {
		t.Errorf("height 12: got %s, %v; want %s", h, err, blk.BlockHash())
	}
	if _, err := fc.BlockHash(ctx, 13); !errors.Is(err, errNotInFile) {
		t.Errorf("height 13: got %v, want not in the file", err)
	}
	if b, err := fc.Block(ctx, blk.BlockHash()); err != nil || b.Transactions[0].TxHash() != cb.TxHash() {
		t.Errorf("block by hash: %v", err)
	}
	for name, body := range map[string]string{
		"not hex":      `{"blocks":[{"height":1,"hex":"zz"}]}`,
		"cut block":    `{"blocks":[{"height":1,"hex":"` + good[:100] + `"}]}`,
		"height twice": `{"blocks":[{"height":1,"hex":"` + good + `"},{"height":1,"hex":"` + good + `"}]}`,
		"negative":     `{"blocks":[{"height":-1,"hex":"` + good + `"}]}`,
		"not json":     `blocks`,
	} {
		if _, err := loadChainFile(write("bad.json", body)); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
}
