package noise

import (
	"testing"
)

func TestURL(t *testing.T) {
	// The spec's example URL, and its key from 4.7.1.
	const spec = "stratum2+tcp://thepool.com:34254/9bXiEd8boQVhq7WddEcERUL5tyyJVFYdU8th3HfbNXK3Yw6GRXh"
	hostPort, key, err := ParseURL(spec)
	if err != nil {
		t.Fatal(err)
	}
	want := AuthorityKey{118, 99, 112, 0, 151, 156, 28, 17, 175, 12, 48, 11, 205, 140, 127, 228, 134, 16, 252, 233, 185, 193, 30, 61, 174, 227, 90, 224, 176, 138, 116, 85}
	if hostPort != "thepool.com:34254" || key != want {
		t.Fatalf("ParseURL = %q, %x", hostPort, key)
	}
	if got := FormatURL("thepool.com:34254", key); got != spec {
		t.Fatalf("FormatURL = %s, want %s", got, spec)
	}
	if got := FormatURL("[::1]:3336", key); got != "stratum2+tcp://[::1]:3336/"+key.String() {
		t.Fatalf("FormatURL with IPv6 = %s", got)
	}
	if h, _, err := ParseURL(FormatURL("[::1]:3336", key)); err != nil || h != "[::1]:3336" {
		t.Fatalf("IPv6 round trip: %q, %v", h, err)
	}
}

func TestURLRejects(t *testing.T) {
	const k = "9bXiEd8boQVhq7WddEcERUL5tyyJVFYdU8th3HfbNXK3Yw6GRXh"
	for _, s := range []string{
		"stratum+tcp://thepool.com:34254/" + k,
		"stratum2+tcp://thepool.com/" + k,
		"stratum2+tcp://thepool.com:34254",
		"stratum2+tcp://thepool.com:34254/",
		"stratum2+tcp://thepool.com:34254/" + k + "/x",
		"stratum2+tcp://thepool.com:34254/" + k[:len(k)-1] + "i",
		"stratum2+tcp://user@thepool.com:34254/" + k,
		"stratum2+tcp://thepool.com:34254/" + k + "?a=b",
		"::",
	} {
		if _, _, err := ParseURL(s); err == nil {
			t.Errorf("ParseURL(%q): no error", s)
		}
	}
}
