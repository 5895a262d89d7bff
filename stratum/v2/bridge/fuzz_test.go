package bridge_test

import (
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/stratum/v2/bridge"
	"github.com/hashgrid/hashgrid/stratum/v2/sv2"
)

// FuzzMessages sends a connection, after SetupConnection, a sequence of frames read
// from the input (msg_type, channel_msg bit, a 1-byte length, the payload): whatever
// they are, the bridge answers or drops that connection, and it still serves the next
// miner, who opens a channel and gets work.
func FuzzMessages(f *testing.F) {
	enc := func(ms ...sv2.Message) []byte {
		var out []byte
		for _, m := range ms {
			p, err := m.Encode(nil)
			if err != nil {
				f.Fatal(err)
			}
			bit := byte(0)
			if sv2.IsChannelMsg(m.MsgType()) {
				bit = 1
			}
			out = append(out, m.MsgType(), bit, byte(len(p)))
			out = append(out, p...)
		}
		return out
	}
	open := &sv2.OpenStandardMiningChannel{RequestID: 1, UserIdentity: payAddr + ".fz", MaxTarget: maxTarget()}
	f.Add(enc(open, &sv2.SubmitSharesStandard{ChannelID: 1, JobID: 1}))
	f.Add(enc(open, &sv2.UpdateChannel{ChannelID: 1, MaximumTarget: maxTarget()}, &sv2.CloseChannel{ChannelID: 1}))
	f.Add(enc(&sv2.OpenExtendedMiningChannel{RequestID: 2, UserIdentity: payAddr + ".fx", MaxTarget: maxTarget(), MinExtranonceSize: 40},
		&sv2.SubmitSharesExtended{ChannelID: 3, Extranonce: make([]byte, 8)}))
	f.Add(enc(setupMsg()))
	f.Add([]byte{sv2.TypeSubmitSharesStandard, 1, 3, 1, 2, 3})

	e := startWith(f, bridge.Limits{HandshakeTimeout: 5 * time.Second}, testDiff, &nullSink{}, false)
	f.Fuzz(func(t *testing.T, in []byte) {
		v, err := dialV2(e.addr, e.key)
		if err != nil {
			t.Fatal(err)
		}
		defer v.nx.Close()
		v.nx.NetConn().SetDeadline(time.Now().Add(10 * time.Second))
		if err := v.setup(); err != nil {
			t.Fatal(err)
		}
		for len(in) >= 3 {
			typ, bit, n := in[0], in[1]&1, int(in[2])
			in = in[3:]
			n = min(n, len(in))
			ext := uint16(0)
			if bit == 1 {
				ext = sv2.ChannelMsgBit
			}
			if v.nx.WriteFrame(ext, typ, in[:n]) != nil {
				break
			}
			in = in[n:]
		}
		// Read what comes back until the bridge is quiet or drops the connection.
		for {
			v.nx.NetConn().SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if _, _, err := v.nx.ReadFrame(); err != nil {
				break
			}
		}
		v.nx.Close()

		good, err := dialV2(e.addr, e.key)
		if err != nil {
			t.Fatal(err)
		}
		defer good.nx.Close()
		good.nx.NetConn().SetDeadline(time.Now().Add(10 * time.Second))
		if err := good.setup(); err != nil {
			t.Fatalf("next miner's setup: %v", err)
		}
		if _, err := good.openStandard("after"); err != nil {
			t.Fatalf("next miner's channel: %v", err)
		}
	})
}
