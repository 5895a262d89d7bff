package bench

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/address/v2"
	"github.com/btcsuite/btcd/chaincfg/v2"

	"github.com/hashgrid/hashgrid/stratum"
)

// firstCoinb2 authorizes user on the pool at addr and returns the coinb2 of its first
// mining.notify.
func firstCoinb2(t *testing.T, addr, user string) string {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	auth, _ := json.Marshal([]string{user, "x"})
	fmt.Fprintf(nc, "{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[]}\n{\"id\":2,\"method\":\"mining.authorize\",\"params\":%s}\n", auth)
	br := bufio.NewReader(nc)
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		m, err := stratum.ParseMessage(line)
		if err != nil || m.Method != "mining.notify" {
			continue
		}
		n, err := stratum.ParseNotify(m.Params)
		if err != nil {
			t.Fatal(err)
		}
		return n.Coinb2
	}
}

// The benchmark pool's SOLO mode and the load client's SOLO users: every connection
// gets a coinbase paying its own address, which is what makes a SOLO new tip cost one
// layout per connection (scripts/bench-stratum notify-solo).
func TestSoloBenchPool(t *testing.T) {
	for _, solo := range []bool{false, true} {
		t.Run(fmt.Sprint("solo=", solo), func(t *testing.T) {
			s, err := StartServer(context.Background(), ServerConfig{Listen: "127.0.0.1:0", Data: t.TempDir(), Txs: 10, MaxConn: 100, Solo: solo})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			seen := map[string]bool{}
			for i := range 3 {
				user := LoadConfig{SoloUsers: true}.userOf(i)
				a, err := address.DecodeAddress(strings.TrimSuffix(user, ".bench"), &chaincfg.MainNetParams)
				if err != nil {
					t.Fatal(err)
				}
				c2 := firstCoinb2(t, s.Addr, user)
				pays := strings.Contains(c2, hex.EncodeToString(a.ScriptAddress()))
				if pays != solo {
					t.Errorf("user %d (%s): coinbase pays its address %v, want %v", i, user, pays, solo)
				}
				seen[c2] = true
			}
			if want := map[bool]int{false: 1, true: 3}[solo]; len(seen) != want {
				t.Errorf("%d distinct coinbases for 3 addresses, want %d", len(seen), want)
			}
		})
	}
}
