package bridge_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"testing"

	"github.com/hashgrid/hashgrid/bench"
	"github.com/hashgrid/hashgrid/stratum"
	"github.com/hashgrid/hashgrid/stratum/v2/bridge"
	"github.com/hashgrid/hashgrid/stratum/v2/noise"
	"github.com/hashgrid/hashgrid/stratum/v2/sv2"
)

// TestWireBytes measures the bytes a miner's connection carries for one share (the
// submit and its answer) and for one new-block job, over V2 (standard and extended
// channels, through the bridge) and over V1 (the pool's own port), for
// docs/benchmarks.md (go test -run TestWireBytes -v). The standard channel's figures
// are exact: every frame is 22 bytes of encrypted header and a 16-byte MAC around its
// payload.
func TestWireBytes(t *testing.T) {
	e := startWith(t, bridge.Limits{}, testDiff, &sink{}, true)
	frame := func(payload int) int64 { return int64(noise.EncryptedHeaderSize + noise.EncryptedLength(payload)) }

	std, err := dialV2(e.addr, e.key)
	if err != nil {
		t.Fatal(err)
	}
	defer std.nx.Close()
	if err := std.setup(); err != nil {
		t.Fatal(err)
	}
	s, err := std.openStandard("wire")
	if err != nil {
		t.Fatal(err)
	}
	ext, err := dialV2(e.addr, e.key)
	if err != nil {
		t.Fatal(err)
	}
	defer ext.nx.Close()
	if err := ext.setup(); err != nil {
		t.Fatal(err)
	}
	if err := ext.send(&sv2.OpenExtendedMiningChannel{RequestID: 1, UserIdentity: payAddr + ".wirex", MaxTarget: maxTarget(), MinExtranonceSize: 8}); err != nil {
		t.Fatal(err)
	}
	if _, err := ext.until(sv2.TypeSetNewPrevHash); err != nil {
		t.Fatal(err)
	}
	nc, err := net.Dial("tcp", e.v1)
	if err != nil {
		t.Fatal(err)
	}
	v1cc := &countConn{Conn: nc}
	ctx := context.Background()
	v1, err := stratum.NewClient(ctx, v1cc, stratum.ClientConfig{User: payAddr + ".wire1", Password: "x"})
	if err != nil {
		t.Fatal(err)
	}
	defer v1.Close()
	w := <-v1.Updates()

	// One share each.
	before := std.cc.bytes()
	var nonce uint32
	if err := std.send(s.share(1, &nonce, true)); err != nil {
		t.Fatal(err)
	}
	if _, err := std.until(sv2.TypeSubmitSharesSuccess); err != nil {
		t.Fatal(err)
	}
	v2Share := std.cc.bytes() - before
	if want := frame(24) + frame(20); v2Share != want {
		t.Errorf("V2 share: %d bytes, want %d", v2Share, want)
	}
	// An accepted one (about half are at this difficulty), as on the V2 side.
	_, en2Size := v1.Extranonce()
	var v1Share int64
	for n := 1; v1Share == 0; n++ {
		before = v1cc.bytes()
		err = v1.Submit(ctx, &stratum.Submit{Worker: payAddr + ".wire1", JobID: w.Notify.JobID, Extranonce2: hex.EncodeToString(make([]byte, en2Size)),
			NTime: w.Notify.NTime, Nonce: fmt.Sprintf("%08x", n)})
		switch {
		case err == nil:
			v1Share = v1cc.bytes() - before
		case !isLow(err) || n > 64:
			t.Fatal(err)
		}
	}

	// One new block each.
	b0, x0, v0 := std.cc.bytes(), ext.cc.bytes(), v1cc.bytes()
	if err := e.pool.UpdateTemplate(bench.Template(900_001, 10), true); err != nil {
		t.Fatal(err)
	}
	if _, err := std.until(sv2.TypeSetNewPrevHash); err != nil {
		t.Fatal(err)
	}
	m, err := ext.until(sv2.TypeNewExtendedMiningJob)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ext.until(sv2.TypeSetNewPrevHash); err != nil {
		t.Fatal(err)
	}
	<-v1.Updates()
	v2Std, v2Ext, v1Job := std.cc.bytes()-b0, ext.cc.bytes()-x0, v1cc.bytes()-v0
	if want := frame(4+4+1+4+32) + frame(4+4+32+4+4); v2Std != want {
		t.Errorf("V2 standard job: %d bytes, want %d", v2Std, want)
	}
	j := m.(*sv2.NewExtendedMiningJob)
	t.Logf("wire bytes per share: V2 %d, V1 %d", v2Share, v1Share)
	t.Logf("wire bytes per new-block job: V2 standard %d, V2 extended %d (coinbase %d+%d bytes, %d-hash path), V1 %d",
		v2Std, v2Ext, len(j.CoinbaseTxPrefix), len(j.CoinbaseTxSuffix), len(j.MerklePath), v1Job)
	if v2Share >= v1Share || v2Std >= v1Job {
		t.Errorf("V2 (share %d, job %d bytes) is not smaller than V1 (share %d, job %d)", v2Share, v2Std, v1Share, v1Job)
	}
}

func isLow(err error) bool {
	se, ok := err.(*stratum.Error)
	return ok && se.Code == stratum.ErrCodeLowDifficulty
}
