package pool_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/bench"
	"github.com/hashgrid/hashgrid/pool"
	"github.com/hashgrid/hashgrid/pow"
	"github.com/hashgrid/hashgrid/stratum"
	"github.com/hashgrid/hashgrid/stream"
)

// rawMiner is a Stratum connection driven line by line.
type rawMiner struct {
	nc      net.Conn
	br      *bufio.Reader
	en1     []byte
	en2Size int
	diff    float64
	job     *stratum.Job
}

// dialRaw subscribes (asking for session id resume when not empty), authorizes user
// with password and waits for the first job.
func dialRaw(t *testing.T, addr, resume, user, password string) *rawMiner {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(60 * time.Second))
	m := &rawMiner{nc: nc, br: bufio.NewReader(nc)}
	fmt.Fprintf(nc, `{"id":1,"method":"mining.subscribe","params":["raw/1","%s"]}`+"\n", resume)
	fmt.Fprintf(nc, `{"id":2,"method":"mining.authorize","params":["%s","%s"]}`+"\n", user, password)
	for m.job == nil {
		line, err := m.br.ReadBytes('\n')
		if err != nil {
			t.Fatal(err)
		}
		msg, err := stratum.ParseMessage(line)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case string(msg.ID) == "1":
			var res []json.RawMessage
			var s string
			if json.Unmarshal(msg.Result, &res) != nil || len(res) < 3 || json.Unmarshal(res[1], &s) != nil || json.Unmarshal(res[2], &m.en2Size) != nil {
				t.Fatalf("subscribe: %s", line)
			}
			m.en1, _ = hex.DecodeString(s)
		case string(msg.ID) == "2" && string(msg.Result) != "true":
			t.Fatalf("authorize: %s", line)
		case msg.Method == "mining.set_difficulty":
			var ps []float64
			json.Unmarshal(msg.Params, &ps)
			m.diff = ps[0]
		case msg.Method == "mining.notify":
			n, err := stratum.ParseNotify(msg.Params)
			if err != nil {
				t.Fatal(err)
			}
			if m.job, err = n.Decode(); err != nil {
				t.Fatal(err)
			}
		}
	}
	return m
}

// header returns the header of the miner's job for extranonce2 en2 (nonce 0).
func (m *rawMiner) header(en2 uint64) (hdr [80]byte, e2 []byte) {
	e2 = binary.BigEndian.AppendUint64(nil, en2)[8-m.en2Size:]
	cb := append(append(append(append([]byte(nil), m.job.Coinb1...), m.en1...), e2...), m.job.Coinb2...)
	root := pow.MerkleRoot(pow.DoubleSHA256(cb), m.job.Branch)
	pow.Header(&hdr, m.job.Version, &m.job.Prev, &root, m.job.NTime, m.job.Bits, 0)
	return hdr, e2
}

// submitLine is a mining.submit line.
func (m *rawMiner) submitLine(id int, user string, e2 []byte, nonce uint32) string {
	return fmt.Sprintf(`{"id":%d,"method":"mining.submit","params":["%s","%s","%s","%08x","%08x"]}`+"\n",
		id, user, m.job.ID, hex.EncodeToString(e2), m.job.NTime, nonce)
}

// reply reads lines until the reply to id.
func (m *rawMiner) reply(t *testing.T, id int) (result json.RawMessage, serr *stratum.Error) {
	t.Helper()
	for {
		line, err := m.br.ReadBytes('\n')
		if err != nil {
			t.Fatalf("reply %d: %v", id, err)
		}
		var r struct {
			ID     json.RawMessage `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *stratum.Error  `json:"error"`
		}
		if json.Unmarshal(line, &r) == nil && string(r.ID) == strconv.Itoa(id) {
			return r.Result, r.Error
		}
	}
}

// honestEN1 is the session id the honest miner resumes, so that its coinbase, and the
// nonces below, are known in advance.
const honestEN1 = "0badf00d"

// honestNonces solve the honest miner's job at difficulty 0.001 for extranonce2 0,
// 1 and 2, on the fixed template and clock of TestLowDifficultyFlood: about 4.3
// million hashes each, half a minute under the race detector on a busy machine, so
// they are found once and kept here. If the coinbase layout changes they stop
// meeting the target; the test then grinds new ones (slowly) and logs them.
var honestNonces = [3]uint32{0x0066672b, 0x0035a680, 0x005d2572}

// TestLowDifficultyFlood runs the pool with signet's default difficulties (minimum
// 0.001) and a durable share log. A client asks for d=1e-9 and floods unhashed
// shares: its difficulty is clamped to the minimum, and every share that does not meet
// it is refused, while an honest miner on the same payout address and the same IP
// keeps having its shares accepted. (Whether and when the flooder is dropped is the
// stratum package's policy; this test takes either.)
func TestLowDifficultyFlood(t *testing.T) {
	net0 := &chaincfg.SigNetParams
	addr := "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"
	minDiff := hashgrid.DiffFromFloat(pool.NetworkDifficulties(net0).Min)
	out, err := pool.SingleAddress(addr, net0)
	if err != nil {
		t.Fatal(err)
	}
	sl, err := stream.Open(filepath.Join(t.TempDir(), "shares"), stream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sl.Close()
	// A fixed template and clock make the honest miner's job known in advance.
	const now = 1_750_000_000
	tmpl := bench.Template(900_000, 10)
	tmpl.CurTime, tmpl.MinTime = now, now-3600
	p, err := pool.New(pool.Config{Network: net0, Outputs: out, Now: func() time.Time { return time.Unix(now, 0) }}, nil, stream.ShareSink{S: sl}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.UpdateTemplate(tmpl, true); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go p.Serve(l)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p.Shutdown(ctx)
	}()

	// The honest miner connects first, at the minimum, and works out its shares.
	honestUser := addr + ".honest"
	h := dialRaw(t, l.Addr().String(), honestEN1, honestUser, fmt.Sprintf("d=%g", minDiff.Float()))
	if h.diff != minDiff.Float() || hex.EncodeToString(h.en1) != honestEN1 {
		t.Fatalf("honest miner: difficulty %g, extranonce1 %x", h.diff, h.en1)
	}
	tgt := pow.DiffTarget(minDiff)
	nonces := honestNonces
	for i := range nonces {
		hdr, _ := h.header(uint64(i))
		binary.LittleEndian.PutUint32(hdr[76:], nonces[i])
		if hh := pow.DoubleSHA256(hdr[:]); pow.Meets(&hh, tgt) {
			continue
		}
		for n := uint32(0); ; n++ {
			binary.LittleEndian.PutUint32(hdr[76:], n)
			if hh := pow.DoubleSHA256(hdr[:]); pow.Meets(&hh, tgt) {
				nonces[i] = n
				break
			}
		}
		t.Logf("honestNonces[%d] is now %#08x: update it", i, nonces[i])
	}

	// The flooder asks for 1e-9 and gets the minimum.
	floodUser := addr + ".flood"
	f := dialRaw(t, l.Addr().String(), "", floodUser, "d=1e-9")
	if f.diff != minDiff.Float() {
		t.Fatalf("d=1e-9 gave difficulty %g, want signet's minimum %g", f.diff, minDiff.Float())
	}
	// Its flood: unhashed shares as fast as the socket takes them. Which of them meet
	// the minimum is worked out first, so that every verdict can be checked.
	const flood = 5000
	fhdr, e2 := f.header(0)
	meets := make([]bool, flood)
	fnonces := make([]uint32, flood)
	for i := range flood {
		fnonces[i] = uint32(i) * 2654435761
		binary.LittleEndian.PutUint32(fhdr[76:], fnonces[i])
		hh := pow.DoubleSHA256(fhdr[:])
		meets[i] = pow.Meets(&hh, tgt)
	}
	go func() {
		w := bufio.NewWriter(f.nc)
		for i := range flood {
			w.WriteString(f.submitLine(100+i, floodUser, e2, fnonces[i]))
		}
		w.Flush()
	}()

	// While the flood is read, the honest miner submits its shares.
	honest := make(chan error, 1)
	go func() {
		for i := range nonces {
			_, e2 := h.header(uint64(i))
			if _, err := h.nc.Write([]byte(h.submitLine(10+i, honestUser, e2, nonces[i]))); err != nil {
				honest <- err
				return
			}
		}
		honest <- nil
	}()

	var low, accepted, other, answered int
	for answered < flood {
		line, err := f.br.ReadBytes('\n')
		if err != nil {
			t.Logf("flooder's connection ended after %d answers: %v", answered, err)
			break
		}
		var r struct {
			ID     json.RawMessage `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *stratum.Error  `json:"error"`
		}
		if json.Unmarshal(line, &r) != nil {
			continue
		}
		id, err := strconv.Atoi(string(r.ID))
		if err != nil || id < 100 {
			continue // a notification
		}
		answered++
		switch i := id - 100; {
		case r.Error == nil && string(r.Result) == "true":
			accepted++
			if !meets[i] {
				t.Errorf("flooded share %d accepted without meeting difficulty %g", i, minDiff.Float())
			}
		case r.Error != nil && r.Error.Code == stratum.ErrCodeLowDifficulty:
			low++
			if meets[i] {
				t.Errorf("flooded share %d meets difficulty %g but was refused", i, minDiff.Float())
			}
		default:
			other++
			t.Logf("flooded share %d: %s", i, strings.TrimSpace(string(line)))
		}
	}
	t.Logf("flood of %d: %d answered, %d refused as low difficulty, %d accepted, %d otherwise", flood, answered, low, accepted, other)
	if low == 0 {
		t.Error("no flooded share refused as low difficulty")
	}

	if err := <-honest; err != nil {
		t.Fatalf("honest miner: %v", err)
	}
	for i := range nonces {
		if res, serr := h.reply(t, 10+i); string(res) != "true" || serr != nil {
			t.Errorf("honest share %d: %s (%v), want accepted", i, res, serr)
		}
	}
}
