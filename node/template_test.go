package node

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readTestdata(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestParseTemplateCaptures(t *testing.T) {
	for _, tc := range []struct {
		file      string
		txs       int
		height    int64
		commit    string // hex of the 32-byte commitment hash, "" for none
		rules     int
		longPolls bool
	}{
		{"btcd_gbt_empty.json", 0, 2, "", 0, true},
		{"btcd_gbt_witness.json", 1, 102, "eac8181729f8d83367754650b05bbee27a7a3d762553fe9fb01d6aff0978ded4", 0, true},
		{"core_gbt_witness.json", 1, 102, "eac8181729f8d83367754650b05bbee27a7a3d762553fe9fb01d6aff0978ded4", 3, true},
		{"core_gbt_empty.json", 0, 2, "e2f61c3f71d1defd3fa999dfa36953755c690689799962b48bebd836974e8cf9", 3, true},
	} {
		t.Run(tc.file, func(t *testing.T) {
			tmpl, err := ParseTemplate(readTestdata(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if got := len(tmpl.Transactions); got != tc.txs {
				t.Errorf("transactions: got %d, want %d", got, tc.txs)
			}
			if tmpl.Height != tc.height {
				t.Errorf("height: got %d, want %d", tmpl.Height, tc.height)
			}
			if tmpl.Bits != 0x207fffff || tmpl.Target[0] != 0x7f || tmpl.Target[1] != 0xff || tmpl.Target[3] != 0 {
				t.Errorf("bits %08x target %x, want regtest 207fffff", tmpl.Bits, tmpl.Target)
			}
			want := []byte(nil)
			if tc.commit != "" {
				want, _ = hex.DecodeString("6a24aa21a9ed" + tc.commit)
			}
			if !bytes.Equal(tmpl.WitnessCommitment, want) {
				t.Errorf("witness commitment: got %x, want %x", tmpl.WitnessCommitment, want)
			}
			if len(tmpl.Rules) != tc.rules {
				t.Errorf("rules: got %v, want %d", tmpl.Rules, tc.rules)
			}
			if tmpl.CoinbaseValue != 5_000_000_000+tmpl.TotalFees() {
				t.Errorf("coinbasevalue %d, want 50 BTC + fees %d", tmpl.CoinbaseValue, tmpl.TotalFees())
			}
		})
	}
}

// mutate parses a capture into a generic map, applies f and re-encodes it.
func mutate(tb testing.TB, file string, f func(m map[string]any)) []byte {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(readTestdata(tb, file), &m); err != nil {
		tb.Fatal(err)
	}
	f(m)
	b, err := json.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func firstTx(m map[string]any) map[string]any {
	return m["transactions"].([]any)[0].(map[string]any)
}

func TestParseTemplateRejectsLies(t *testing.T) {
	const w = "btcd_gbt_witness.json"
	for _, tc := range []struct {
		name string
		f    func(m map[string]any)
		want string
	}{
		{"no version", func(m map[string]any) { delete(m, "version") }, "version missing"},
		{"version overflow", func(m map[string]any) { m["version"] = 1 << 31 }, "version"},
		{"short prevhash", func(m map[string]any) { m["previousblockhash"] = "abcd" }, "previousblockhash"},
		{"non-hex prevhash", func(m map[string]any) { m["previousblockhash"] = strings.Repeat("zz", 32) }, "previousblockhash"},
		{"height zero", func(m map[string]any) { m["height"] = 0 }, "height"},
		{"negative curtime", func(m map[string]any) { m["curtime"] = -1 }, "curtime"},
		{"mintime after curtime", func(m map[string]any) { m["mintime"] = m["curtime"].(float64) + 1 }, "mintime"},
		{"bits short", func(m map[string]any) { m["bits"] = "207fff" }, "bits"},
		{"bits zero", func(m map[string]any) { m["bits"] = "20000000" }, "zero target"},
		{"bits negative", func(m map[string]any) { m["bits"] = "20800000" }, "negative"},
		{"bits overflow", func(m map[string]any) { m["bits"] = "ff7fffff" }, "overflow"},
		{"target mismatch", func(m map[string]any) { m["target"] = strings.Repeat("00", 31) + "01" }, "does not match bits"},
		{"no coinbasevalue", func(m map[string]any) { delete(m, "coinbasevalue") }, "coinbasevalue missing"},
		{"coinbasevalue too high", func(m map[string]any) { m["coinbasevalue"] = 5_000_010_001 + 5_000_000_000 }, "coinbasevalue"},
		{"coinbasevalue below fees", func(m map[string]any) { m["coinbasevalue"] = 9_999 }, "coinbasevalue"},
		{"tx bad hex", func(m map[string]any) { firstTx(m)["data"] = "0g" }, "transaction 0: data"},
		{"tx truncated", func(m map[string]any) { d := firstTx(m)["data"].(string); firstTx(m)["data"] = d[:len(d)-2] }, "transaction 0: data"},
		{"tx trailing", func(m map[string]any) { firstTx(m)["data"] = firstTx(m)["data"].(string) + "00" }, "trailing"},
		{"txid lie", func(m map[string]any) { firstTx(m)["txid"] = strings.Repeat("11", 32) }, "txid"},
		{"wtxid lie", func(m map[string]any) { firstTx(m)["hash"] = strings.Repeat("11", 32) }, "hash"},
		{"weight lie", func(m map[string]any) { firstTx(m)["weight"] = 1 }, "weight"},
		{"fee missing", func(m map[string]any) { delete(firstTx(m), "fee") }, "fee missing"},
		{"fee negative", func(m map[string]any) { firstTx(m)["fee"] = -1 }, "fee"},
		{"depends forward", func(m map[string]any) { firstTx(m)["depends"] = []int{1} }, "depends"},
		{"duplicate tx", func(m map[string]any) {
			txs := m["transactions"].([]any)
			m["transactions"] = append(txs, txs[0])
			m["coinbasevalue"] = 5_000_020_000
		}, "duplicate"},
		{"commitment lie", func(m map[string]any) { m["default_witness_commitment"] = strings.Repeat("22", 32) }, "does not match"},
		{"commitment wrong length", func(m map[string]any) { m["default_witness_commitment"] = "6a24aa21a9ed00" }, "default_witness_commitment"},
		{"commitment wrong magic", func(m map[string]any) {
			m["default_witness_commitment"] = "6a24aa21a9ee" + m["default_witness_commitment"].(string)
		}, "default_witness_commitment"},
		{"longpollid huge", func(m map[string]any) { m["longpollid"] = strings.Repeat("a", maxLongPollID+1) }, "longpollid"},
		{"transactions not array", func(m map[string]any) { m["transactions"] = "x" }, "template"},
		{"fractional height", func(m map[string]any) { m["height"] = 1.5 }, "template"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTemplate(mutate(t, w, tc.f))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got err %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestParseTemplateComputesMissingCommitment(t *testing.T) {
	tmpl, err := ParseTemplate(mutate(t, "btcd_gbt_witness.json", func(m map[string]any) { delete(m, "default_witness_commitment") }))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := hex.DecodeString("6a24aa21a9edeac8181729f8d83367754650b05bbee27a7a3d762553fe9fb01d6aff0978ded4")
	if !bytes.Equal(tmpl.WitnessCommitment, want) {
		t.Fatalf("computed commitment %x, want %x", tmpl.WitnessCommitment, want)
	}
}

func TestCompactToTarget(t *testing.T) {
	for _, tc := range []struct {
		bits uint32
		want string
	}{
		{0x1d00ffff, "00000000ffff0000000000000000000000000000000000000000000000000000"},
		{0x207fffff, "7fffff0000000000000000000000000000000000000000000000000000000000"},
		{0x17034219, "0000000000000000000342190000000000000000000000000000000000000000"},
		{0x03123456, "0000000000000000000000000000000000000000000000000000000000123456"},
		{0x02123456, "0000000000000000000000000000000000000000000000000000000000001234"},
	} {
		got, err := CompactToTarget(tc.bits)
		if err != nil {
			t.Fatalf("%08x: %v", tc.bits, err)
		}
		if hex.EncodeToString(got[:]) != tc.want {
			t.Errorf("%08x: got %x, want %s", tc.bits, got, tc.want)
		}
	}
	for _, bits := range []uint32{0, 0x01003456, 0x04800000, 0x2100ffff + 0x01000000} {
		if _, err := CompactToTarget(bits); err == nil {
			t.Errorf("%08x: want an error", bits)
		}
	}
}

// encodeTemplate writes a Template back as a getblocktemplate result, for round trips.
func encodeTemplate(t *Template) []byte {
	txs := make([]map[string]any, len(t.Transactions))
	for i, tx := range t.Transactions {
		txs[i] = map[string]any{"data": hex.EncodeToString(tx.Data), "txid": tx.TxID.String(), "hash": tx.WTxID.String(), "fee": tx.Fee, "weight": tx.Weight}
	}
	m := map[string]any{
		"version": t.Version, "previousblockhash": t.PrevHash.String(), "transactions": txs,
		"coinbasevalue": t.CoinbaseValue, "bits": hex.EncodeToString([]byte{byte(t.Bits >> 24), byte(t.Bits >> 16), byte(t.Bits >> 8), byte(t.Bits)}),
		"target": hex.EncodeToString(t.Target[:]), "curtime": t.CurTime, "mintime": t.MinTime, "height": t.Height,
		"longpollid": t.LongPollID, "rules": t.Rules,
	}
	if t.WitnessCommitment != nil {
		m["default_witness_commitment"] = hex.EncodeToString(t.WitnessCommitment)
	}
	b, _ := json.Marshal(m)
	return b
}

func FuzzParseTemplate(f *testing.F) {
	for _, name := range []string{"btcd_gbt_empty.json", "btcd_gbt_witness.json", "core_gbt_witness.json", "core_gbt_empty.json"} {
		f.Add(readTestdata(f, name))
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tmpl, err := ParseTemplate(data)
		if err != nil {
			return
		}
		// Invariants of a template that parsed.
		if tmpl.Height < 1 || tmpl.CurTime < tmpl.MinTime || tmpl.CoinbaseValue < tmpl.TotalFees() {
			t.Fatalf("inconsistent template accepted: %+v", tmpl)
		}
		if tmpl.WitnessCommitment != nil && !bytes.Equal(tmpl.WitnessCommitment, WitnessCommitmentScript(tmpl.Transactions)) {
			t.Fatalf("commitment %x does not match transactions", tmpl.WitnessCommitment)
		}
		var weight int64
		for _, tx := range tmpl.Transactions {
			weight += tx.Weight
		}
		if weight > MaxBlockWeight {
			t.Fatalf("weight %d accepted", weight)
		}
		// Round trip: what was parsed, written back, parses to the same template.
		again, err := ParseTemplate(encodeTemplate(tmpl))
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if !bytes.Equal(encodeTemplate(again), encodeTemplate(tmpl)) {
			t.Fatalf("round trip changed the template")
		}
	})
}
