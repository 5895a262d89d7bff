package node

import (
	"encoding/json"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	c, err := NewClient("http://u:p@127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSet([]*Client{c}, SetOptions{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		fails int
		want  time.Duration
	}{{1, 100 * time.Millisecond}, {2, 200 * time.Millisecond}, {4, 800 * time.Millisecond}, {5, time.Second}, {1000, time.Second}} {
		if got := s.backoff(tc.fails); got != tc.want {
			t.Errorf("backoff(%d) = %s, want %s", tc.fails, got, tc.want)
		}
	}
	if _, err := NewSet(nil, SetOptions{}); err == nil {
		t.Error("NewSet(nil): want an error")
	}
	if _, err := NewSet([]*Client{c}, SetOptions{MinBackoff: time.Second, MaxBackoff: time.Millisecond}); err == nil {
		t.Error("max backoff below min: want an error")
	}
}

func FuzzParseChainInfo(f *testing.F) {
	f.Add([]byte(`{"chain":"regtest","blocks":1,"headers":1,"bestblockhash":"3f5732dc6bab657723f807aa7d7f52c6ebee547c76002a09dc32c7c20f3deebd","difficulty":4.656542373906925e-10}`))
	f.Add([]byte(`{"chain":"main","blocks":-1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var info ChainInfo
		if err := json.Unmarshal(data, &info); err != nil {
			return
		}
		if info.Chain == "" || info.Blocks < 0 || !validDifficulty(info.Difficulty) {
			t.Fatalf("accepted %+v", info)
		}
	})
}

func FuzzParseBlockHeader(f *testing.F) {
	f.Add([]byte(`{"hash":"3f5732dc6bab657723f807aa7d7f52c6ebee547c76002a09dc32c7c20f3deebd","confirmations":1,"height":1,"time":1700000000,"previousblockhash":"0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"}`))
	f.Add([]byte(`{"hash":"3f5732dc6bab657723f807aa7d7f52c6ebee547c76002a09dc32c7c20f3deebd","confirmations":-1,"height":7}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var h BlockHeader
		if err := json.Unmarshal(data, &h); err != nil {
			return
		}
		if h.Height < 0 || h.Confirmations == 0 || h.Confirmations < -1 {
			t.Fatalf("accepted %+v", h)
		}
	})
}
