package pool_test

import (
	"bufio"
	"encoding/json"
	"net"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"

	"github.com/hashgrid/hashgrid/pool"
	"github.com/hashgrid/hashgrid/stratum"
)

// TestExtranonceSubscribeRefused checks over a real connection that the pool refuses
// mining.extranonce.subscribe and the subscribe-extranonce extension, since it never
// sends mining.set_extranonce: a miner told "true" would wait for one in vain.
func TestExtranonceSubscribeRefused(t *testing.T) {
	addr := "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
	_, poolAddr := diffPool(t, &chaincfg.RegressionNetParams, addr, pool.Config{})
	nc, err := net.Dial("tcp", poolAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(nc)
	send := func(line string) {
		t.Helper()
		if _, err := nc.Write([]byte(line + "\n")); err != nil {
			t.Fatal(err)
		}
	}
	read := func() *stratum.Message {
		t.Helper()
		line, err := br.ReadBytes('\n')
		if err != nil {
			t.Fatal(err)
		}
		m, err := stratum.ParseMessage(line)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if m.Method == "mining.set_extranonce" {
			t.Errorf("set_extranonce sent: %s", line)
		}
		return m
	}
	send(`{"id":1,"method":"mining.configure","params":[["subscribe-extranonce"],{}]}`)
	var ext map[string]any
	if m := read(); json.Unmarshal(m.Result, &ext) != nil || ext["subscribe-extranonce"] != false {
		t.Errorf("configure subscribe-extranonce: %s", m.Result)
	}
	send(`{"id":2,"method":"mining.subscribe","params":["test/1"]}`)
	read()
	send(`{"id":3,"method":"mining.extranonce.subscribe","params":[]}`)
	if m := read(); string(m.Result) != "false" || m.Error != nil {
		t.Errorf("mining.extranonce.subscribe answered %s (%v), want false", m.Result, m.Error)
	}
	send(`{"id":4,"method":"mining.authorize","params":["` + addr + `.w","x"]}`)
	for {
		m := read()
		if m.Method == "mining.notify" {
			break
		}
	}
	// The connection keeps mining after the refusal: a suggestion brings a new job,
	// and nothing else arrives before it.
	// (read fails the test at the connection's deadline.)
	send(`{"id":5,"method":"mining.suggest_difficulty","params":[0.01]}`)
	for {
		m := read()
		if m.Method == "mining.notify" {
			return
		}
		if m.Method != "" && m.Method != "mining.set_difficulty" {
			t.Errorf("unexpected %s", m.Method)
		}
	}
}
