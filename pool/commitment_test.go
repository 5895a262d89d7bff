package pool_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"

	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/bench"
	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/pool"
	"github.com/hashgrid/hashgrid/pow"
)

// coinbaseOf returns the coinbase a raw miner's job gives for extranonce2 0.
func coinbaseOf(t *testing.T, m *rawMiner) (*wire.MsgTx, int) {
	t.Helper()
	e2 := make([]byte, m.en2Size)
	cb := append(append(append(append([]byte(nil), m.job.Coinb1...), m.en1...), e2...), m.job.Coinb2...)
	var tx wire.MsgTx
	if err := tx.DeserializeNoWitness(bytes.NewReader(cb)); err != nil {
		t.Fatalf("coinbase: %v", err)
	}
	return &tx, len(cb)
}

// TestCommitmentOutput: while the commitment file exists, each new template's
// coinbase carries its script as a last, zero-value output after payouts that are
// exactly the OutputFunc's; without the file, with a bad one, or where the output would
// push the block over the weight limit, the coinbase is the OutputFunc's alone.
func TestCommitmentOutput(t *testing.T) {
	net0 := &chaincfg.RegressionNetParams
	a, _ := pool.AddressScript(frontEndTestAddr, net0)
	b := append([]byte{0x00, 0x20}, bytes.Repeat([]byte{0xb}, 32)...) // a P2WSH output
	// A layout like a PPLNS one: several outputs, returned from a cache whose spare
	// capacity a careless append would write into.
	cached := make([]pool.Output, 3, 8)
	outputs := func(tmpl *node.Template, value int64, finder string) ([]pool.Output, string, error) {
		cached[0] = pool.Output{Value: value - 1000, Script: a}
		cached[1] = pool.Output{Value: 1000, Script: b}
		cached[2] = pool.Output{Value: 0, Script: append([]byte{0x6a, 0x24}, []byte("hgw1"+string(make([]byte, 32)))...)}
		return cached, "", nil
	}
	file := filepath.Join(t.TempDir(), pool.CommitmentFileName)
	p, addr := servePool(t, pool.Config{Network: net0, Outputs: outputs, CommitmentFile: file}, &keptShares{})
	script := append([]byte{0x6a, 0x2d}, []byte("hgreg"+string(bytes.Repeat([]byte{7}, 40)))...)
	height := int64(900_000)
	// next installs a new template of txWeight per transaction and returns its coinbase.
	next := func(txWeight int64) (*wire.MsgTx, int) {
		t.Helper()
		height++
		tmpl := bench.Template(height, 10)
		for i := range tmpl.Transactions {
			tmpl.Transactions[i].Weight = txWeight
		}
		if err := p.UpdateTemplate(tmpl, true); err != nil {
			t.Fatal(err)
		}
		return coinbaseOf(t, dialRaw(t, addr, "", frontEndTestAddr+".w", "x"))
	}
	payouts := func(what string, cb *wire.MsgTx, n int) {
		t.Helper()
		if len(cb.TxOut) < n {
			t.Fatalf("%s: %d outputs, want at least %d", what, len(cb.TxOut), n)
		}
		var sum int64
		for i, o := range cb.TxOut {
			sum += o.Value
			if i < len(cached) && (o.Value != cached[i].Value || !bytes.Equal(o.PkScript, cached[i].Script)) {
				t.Errorf("%s: output %d pays %d to %x; the layout says %d to %x", what, i, o.Value, o.PkScript, cached[i].Value, cached[i].Script)
			}
		}
		if sum != 312_500_000 {
			t.Errorf("%s: outputs pay %d, the template %d", what, sum, 312_500_000)
		}
	}

	plain, plainSize := next(0)
	payouts("no file", plain, 3)
	if len(plain.TxOut) != 3 {
		t.Fatalf("no file: %d outputs, want the layout's 3", len(plain.TxOut))
	}
	if err := pool.WriteCommitment(file, script); err != nil {
		t.Fatal(err)
	}
	with, withSize := next(0)
	payouts("with the file", with, 4)
	if len(with.TxOut) != 4 || with.TxOut[3].Value != 0 || !bytes.Equal(with.TxOut[3].PkScript, script) {
		t.Fatalf("with the file: outputs %+v; want the layout's 3 and the commitment", with.TxOut)
	}
	if cap(cached) != 8 || len(cached) != 3 {
		t.Errorf("the layout's slice was changed: len %d cap %d", len(cached), cap(cached))
	}
	if got, want := withSize-plainSize, 8+1+len(script); got != want {
		t.Errorf("the commitment added %d bytes to the coinbase, want %d", got, want)
	}
	// Weight: 11 transactions' worth of block around the coinbase; the other 10
	// share what is left of the limit.
	base := int64(4 * (80 + 1 + plainSize))
	room := (node.MaxBlockWeight - base) / 10
	if cb, _ := next(room); len(cb.TxOut) != 3 {
		t.Errorf("a template at the weight limit: %d outputs, want the commitment left out", len(cb.TxOut))
	}
	if cb, _ := next(room - 30); len(cb.TxOut) != 4 { // 300 WU freed, the output needs 224
		t.Errorf("a template with room for the commitment: %d outputs, want 4", len(cb.TxOut))
	}
	// A file that is not an OP_RETURN script is left out; mining goes on.
	if err := os.WriteFile(file, []byte(fmt.Sprintf("%x\n", a)), 0o644); err != nil {
		t.Fatal(err)
	}
	if cb, _ := next(0); len(cb.TxOut) != 3 {
		t.Errorf("a bad file: %d outputs, want the layout's 3", len(cb.TxOut))
	}
	if err := pool.WriteCommitment(file, a); err == nil {
		t.Error("WriteCommitment of a P2WPKH script: no error")
	}
	os.Remove(file)
	if cb, _ := next(0); len(cb.TxOut) != 3 {
		t.Errorf("file removed: %d outputs, want the layout's 3", len(cb.TxOut))
	}
}

func TestReadCommitment(t *testing.T) {
	dir := t.TempDir()
	if s, err := pool.ReadCommitment(filepath.Join(dir, "none")); s != nil || err != nil {
		t.Errorf("missing file: %x, %v; want nothing", s, err)
	}
	for _, tt := range []struct {
		name, content string
		ok            bool
	}{
		{"op_return", "6a0568677265670a\n", true},
		{"no newline", "6a00", true},
		{"trailing lines", "6a00\nsince 7\n", true},
		{"empty", "\n", false},
		{"not hex", "6a0z\n", false},
		{"not op_return", "0014" + fmt.Sprintf("%040x", 1) + "\n", false},
		{"at the limit", "6a4c50" + fmt.Sprintf("%0160x", 1) + "\n", true},
		{"too long", "6a4c51" + fmt.Sprintf("%0162x", 1) + "\n", false},
	} {
		path := filepath.Join(dir, tt.name)
		os.WriteFile(path, []byte(tt.content), 0o644)
		s, err := pool.ReadCommitment(path)
		if (err == nil) != tt.ok || (tt.ok && len(s) == 0) {
			t.Errorf("%s: %x, %v; want ok %v", tt.name, s, err, tt.ok)
		}
	}
}

func TestSampleTarget(t *testing.T) {
	for _, d := range []hashgrid.Diff{1, hashgrid.DiffOne / 1000, hashgrid.DiffOne, 16384 * hashgrid.DiffOne, hashgrid.MaxDiff} {
		for _, k := range []uint{0, 1, 10, 63, 62} {
			rate := uint64(1) << k
			got, err := pool.SampleTarget(d, rate)
			if k == 63 {
				if err == nil {
					t.Errorf("rate 2^63 accepted")
				}
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			want := pow.FromBig(new(big.Int).Rsh(pow.DiffTarget(d).Big(), k))
			if got != want {
				t.Errorf("SampleTarget(%v, 2^%d) = %x, want %x", d, k, got, want)
			}
		}
	}
	// SampleLevel agrees with Sampled at every rate.
	for i := range 200 {
		h := pow.DoubleSHA256([]byte{byte(i), byte(i >> 8)})
		d := hashgrid.Diff(1) << (i % 40)
		t0 := pow.DiffTarget(d)
		lv := pool.SampleLevel(&h, t0)
		for k := range 20 {
			in, _ := pool.Sampled(&h, d, 1<<k)
			if in != (lv >= k) {
				t.Fatalf("hash %s at %v: level %d, Sampled at 2^%d %v", h, d, lv, k, in)
			}
		}
	}
	for _, rate := range []uint64{0, 3, 1000} {
		if _, err := pool.SampleTarget(hashgrid.DiffOne, rate); err == nil {
			t.Errorf("rate %d accepted", rate)
		}
		if _, err := pool.New(pool.Config{Network: &chaincfg.RegressionNetParams, Outputs: func(*node.Template, int64, string) ([]pool.Output, string, error) { return nil, "", nil }, SampleRate: rate}, nil, nil, nil); rate != 0 && err == nil {
			t.Errorf("pool with sample rate %d accepted", rate)
		}
	}
}

// TestSampledShares submits shares over TCP to a pool sampling one in two: exactly
// the shares whose hash meets the sample target keep their header, and the header
// hashes to the share's hash.
func TestSampledShares(t *testing.T) {
	out, err := pool.SingleAddress(frontEndTestAddr, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	sink := &keptShares{}
	_, addr := servePool(t, pool.Config{Network: &chaincfg.RegressionNetParams, Outputs: out, SampleRate: 2}, sink)
	user := frontEndTestAddr + ".w"
	m := dialRaw(t, addr, "", user, "d=0.00001")
	tgt := pow.DiffTarget(hashgrid.DiffFromFloat(m.diff))
	const shares = 24
	for i := range shares {
		hdr, e2 := m.header(uint64(i))
		nonce := uint32(0)
		for ; ; nonce++ {
			binary.LittleEndian.PutUint32(hdr[76:], nonce)
			if h := pow.DoubleSHA256(hdr[:]); pow.Meets(&h, tgt) {
				break
			}
			if nonce == 1<<26 {
				t.Fatalf("no share at difficulty %g", m.diff)
			}
		}
		fmt.Fprint(m.nc, m.submitLine(10+i, user, e2, nonce))
		if res, serr := m.reply(t, 10+i); serr != nil || string(res) != "true" {
			t.Fatalf("share %d refused: %s %v", i, res, serr)
		}
	}
	got := sink.accepted()
	if len(got) != shares {
		t.Fatalf("%d accepted shares recorded, want %d", len(got), shares)
	}
	sampled := 0
	for _, s := range got {
		h := chainhash.Hash(s.Hash)
		want, err := pool.Sampled(&h, s.Diff, 2)
		if err != nil {
			t.Fatal(err)
		}
		if (s.Header != nil) != want {
			t.Errorf("share %x: header kept %v, in the sample %v", s.Hash, s.Header != nil, want)
		}
		if s.Header != nil {
			sampled++
			if pow.DoubleSHA256(s.Header[:]) != h {
				t.Errorf("share %x: its header hashes to %s", s.Hash, pow.DoubleSHA256(s.Header[:]))
			}
		}
	}
	t.Logf("%d of %d shares sampled at 1 in 2", sampled, shares)
	if sampled == 0 || sampled == shares {
		t.Errorf("%d of %d shares sampled at 1 in 2: the rule is not applied (chance 2^-23)", sampled, shares)
	}
}
