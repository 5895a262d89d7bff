package pool

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/btcsuite/btcd/address/v2"
	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/pow"
	"github.com/hashgrid/hashgrid/stratum"
)

// soloTestPool returns a pool whose coinbase pays each finder, on a template of txs
// transactions.
func soloTestPool(t *testing.T, txs int) *Pool {
	t.Helper()
	net0 := &chaincfg.MainNetParams
	solo := func(tmpl *node.Template, value int64, finder string) ([]Output, string, error) {
		if finder == "" {
			finder = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
		}
		sc, err := AddressScript(finder, net0)
		if err != nil {
			return nil, "", err
		}
		return []Output{{Value: value, Script: sc}}, finder, nil
	}
	now := func() time.Time { return time.Unix(1_700_000_000, 0) }
	p, err := New(Config{Network: net0, Outputs: solo, Now: now}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &node.Template{Version: 0x20000000, CoinbaseValue: 312_500_000, Bits: 0x17034219, CurTime: 1_700_000_000, MinTime: 1_699_996_400, Height: 900_000}
	tmpl.PrevHash[0] = 7
	for i := range txs {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], uint64(i))
		tmpl.Transactions = append(tmpl.Transactions, node.TemplateTx{TxID: chainhash.DoubleHashH(b[:])})
	}
	if err := p.UpdateTemplate(tmpl, true); err != nil {
		t.Fatal(err)
	}
	return p
}

func testAddress(t *testing.T, i byte) string {
	t.Helper()
	a, err := address.NewAddressWitnessPubKeyHash(bytes.Repeat([]byte{i}, 20), &chaincfg.MainNetParams)
	if err != nil {
		t.Fatal(err)
	}
	return a.EncodeAddress()
}

// TestLayoutsShareTheBranch checks that the coinbase layouts of one template (one per
// address under SOLO) share its merkle branch rather than each rebuilding it: with
// 10,000 SOLO addresses and a 3,000-transaction template, rebuilding it per address
// stalled a new tip for about 17 s.
func TestLayoutsShareTheBranch(t *testing.T) {
	p := soloTestPool(t, 3000)
	a := p.jobFor(&session{address: testAddress(t, 1)}, p.current)
	b := p.jobFor(&session{address: testAddress(t, 2)}, p.current)
	if a.work == b.work || a.work == p.current.work {
		t.Fatal("SOLO addresses share a coinbase layout")
	}
	if len(a.work.branch) != 12 {
		t.Fatalf("branch of %d hashes, want 12", len(a.work.branch))
	}
	for _, w := range []*work{b.work, p.current.work} {
		if &w.branch[0] != &a.work.branch[0] {
			t.Error("a layout of the template built its own merkle branch")
		}
	}
}

// TestNotifyLine checks the pool's directly written mining.notify against the
// stratum package's encoding of the same fields.
func TestNotifyLine(t *testing.T) {
	for _, txs := range []int{0, 1, 5} {
		p := soloTestPool(t, txs)
		j := p.jobFor(&session{address: testAddress(t, 3)}, p.current)
		w := j.work
		line := j.appendNotify([]byte("prefix"))
		if !bytes.HasPrefix(line, []byte("prefix")) {
			t.Fatalf("appendNotify dropped what it appended to: %q", line)
		}
		line = line[len("prefix"):]
		m, err := stratum.ParseMessage(bytes.TrimSuffix(line, []byte("\n")))
		if err != nil {
			t.Fatalf("%d transactions: %v", txs, err)
		}
		got, err := stratum.ParseNotify(m.Params)
		if err != nil {
			t.Fatalf("%d transactions: %v", txs, err)
		}
		n := stratum.Notify{JobID: "2", PrevHash: w.prevStr, Coinb1: hex.EncodeToString(w.coinb1), Coinb2: hex.EncodeToString(w.coinb2),
			Version: "20000000", NBits: "17034219", NTime: "6553f100", CleanJobs: true}
		for _, h := range w.branch {
			n.MerkleBranch = append(n.MerkleBranch, hex.EncodeToString(h[:]))
		}
		want := stratum.AppendNotification(nil, "mining.notify", n.MarshalParams())
		if !bytes.Equal(line, want) {
			t.Errorf("%d transactions:\n got %s\nwant %s", txs, line, want)
		}
		if m.Method != "mining.notify" || len(got.MerkleBranch) != len(w.branch) {
			t.Errorf("%d transactions: method %q, branch of %d", txs, m.Method, len(got.MerkleBranch))
		}
	}
}

// TestTipStalesEveryTemplate: a new tip makes stale every layout of every template on
// the old tip, not only the last template's: a template refreshed on the same tip
// (new transactions) used to leave the earlier one's jobs valid after the tip moved.
func TestTipStalesEveryTemplate(t *testing.T) {
	p := soloTestPool(t, 5)
	a, b := testAddress(t, 1), testAddress(t, 2)
	first := p.current
	firstA := p.jobFor(&session{address: a}, first)
	refresh := *p.tmpl
	refresh.CoinbaseValue++
	if err := p.UpdateTemplate(&refresh, false); err != nil {
		t.Fatal(err)
	}
	second := p.current
	secondB := p.jobFor(&session{address: b}, second)
	for name, j := range map[string]*job{"first": first, "first, address a": firstA, "refresh": second, "refresh, address b": secondB} {
		if j.work.stale.Load() {
			t.Errorf("%s: stale before the tip moved", name)
		}
	}
	next := refresh
	next.PrevHash[0]++
	next.Height++
	if err := p.UpdateTemplate(&next, true); err != nil {
		t.Fatal(err)
	}
	for name, j := range map[string]*job{"first": first, "first, address a": firstA, "refresh": second, "refresh, address b": secondB} {
		if !j.work.stale.Load() {
			t.Errorf("%s: not stale after the tip moved", name)
		}
	}
	if p.current.work.stale.Load() || p.jobFor(&session{address: a}, p.current).work.stale.Load() {
		t.Error("the new tip's work is stale")
	}
}

// TestSoloShareFromBroadcastLine mines a share as a miner would, from nothing but the
// mining.notify line a SOLO connection got in a new tip's broadcast, and checks that
// the pool accepts it with the same header hash and that its coinbase pays the
// connection's address.
func TestSoloShareFromBroadcastLine(t *testing.T) {
	p := soloTestPool(t, 5)
	for i := byte(1); i <= 3; i++ {
		addr := testAddress(t, i)
		s := &session{address: addr, diff: hashgrid.DiffFromFloat(math.Exp2(-32)), workers: []userWorker{{addr, ""}}}
		line := s.jobLine(p, p.current)
		m, err := stratum.ParseMessage(bytes.TrimSuffix(line[bytes.LastIndexByte(line[:len(line)-1], '\n')+1:], []byte("\n")))
		if err != nil {
			t.Fatal(err)
		}
		n, err := stratum.ParseNotify(m.Params)
		if err != nil {
			t.Fatal(err)
		}
		j, err := n.Decode()
		if err != nil {
			t.Fatal(err)
		}
		en1, en2 := uint32(0x01020304)+uint32(i), []byte{9, 8, 7, 6, 5, 4, 3, 2}
		cb := append(binary.BigEndian.AppendUint32(append([]byte(nil), j.Coinb1...), en1), en2...)
		cb = append(cb, j.Coinb2...)
		var tx wire.MsgTx
		if err := tx.DeserializeNoWitness(bytes.NewReader(cb)); err != nil {
			t.Fatal(err)
		}
		want, _ := AddressScript(addr, &chaincfg.MainNetParams)
		if len(tx.TxOut) != 1 || !bytes.Equal(tx.TxOut[0].PkScript, want) || tx.TxOut[0].Value != p.tmpl.CoinbaseValue {
			t.Errorf("%s: coinbase outputs %+v, want %d to %x", addr, tx.TxOut, p.tmpl.CoinbaseValue, want)
		}
		root := pow.MerkleRoot(pow.DoubleSHA256(cb), j.Branch)
		var hdr [80]byte
		pow.Header(&hdr, j.Version, &j.Prev, &root, j.NTime, j.Bits, 42)
		hash := pow.DoubleSHA256(hdr[:])
		sub := &stratum.Submit{JobID: j.ID, Extranonce2: hex.EncodeToString(en2), NTime: fmt.Sprintf("%08x", j.NTime), Nonce: fmt.Sprintf("%08x", 42)}
		sh := hashgrid.Share{Time: p.cfg.Now()}
		res, _, _, serr := p.validate(s, en1, 0, sub, &sh)
		if res != hashgrid.ShareAccepted || sh.Hash != hash {
			t.Errorf("%s: share %v (%v), hash %x, the miner's %x", addr, res, serr, sh.Hash, hash)
		}
	}
}
