package node

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeNode answers JSON-RPC requests with handler's reply for the decoded request.
func fakeNode(tb testing.TB, handler func(w http.ResponseWriter, req map[string]any)) string {
	tb.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req map[string]any
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		handler(w, req)
	}))
	tb.Cleanup(srv.Close)
	return strings.Replace(srv.URL, "http://", "http://user:s3cret@", 1)
}

func TestClientRequestShape(t *testing.T) {
	var got map[string]any
	u := fakeNode(t, func(w http.ResponseWriter, req map[string]any) {
		got = req
		io.WriteString(w, `{"result":"00000000000000000000000000000000000000000000000000000000000000ff","error":null,"id":`+jsonNum(req["id"])+`}`)
	})
	c, err := NewClient(u)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.BlockHash(context.Background(), 7); err != nil {
		t.Fatal(err)
	}
	// btcd answers only requests with "jsonrpc" and "id", and positional params.
	if got["jsonrpc"] != "1.0" || got["id"] == nil || got["method"] != "getblockhash" {
		t.Fatalf("request %v: want jsonrpc 1.0, an id and the method", got)
	}
	if p, ok := got["params"].([]any); !ok || len(p) != 1 || p[0] != float64(7) {
		t.Fatalf("params %v, want [7]", got["params"])
	}
	var params any
	u = fakeNode(t, func(w http.ResponseWriter, req map[string]any) {
		params = req["params"]
		io.WriteString(w, `{"result":"00000000000000000000000000000000000000000000000000000000000000ff","error":null,"id":`+jsonNum(req["id"])+`}`)
	})
	c, _ = NewClient(u)
	if _, err := c.BestBlockHash(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p, ok := params.([]any); !ok || len(p) != 0 {
		t.Fatalf("params %#v, want [] (never null)", params)
	}
}

func jsonNum(v any) string { b, _ := json.Marshal(v); return string(b) }

func TestClientErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply func(w http.ResponseWriter, id string)
		check func(error) bool
	}{
		{"empty reply", func(w http.ResponseWriter, id string) {}, func(err error) bool { return errors.Is(err, ErrEmptyReply) }},
		{"rpc error", func(w http.ResponseWriter, id string) {
			w.WriteHeader(500) // Bitcoin Core sends RPC errors with status 500
			io.WriteString(w, `{"result":null,"error":{"code":-10,"message":"Bitcoin is downloading blocks..."},"id":`+id+`}`)
		}, func(err error) bool {
			var e *RPCError
			return errors.As(err, &e) && e.Code == CodeClientInInitialDL && strings.Contains(e.Message, "downloading")
		}},
		{"unauthorized", func(w http.ResponseWriter, id string) { w.WriteHeader(401) }, func(err error) bool {
			var e *HTTPError
			return errors.As(err, &e) && e.StatusCode == 401
		}},
		{"html error", func(w http.ResponseWriter, id string) { w.WriteHeader(503); io.WriteString(w, "<html>busy</html>") }, func(err error) bool {
			var e *HTTPError
			return errors.As(err, &e) && e.StatusCode == 503 && strings.Contains(e.Body, "busy")
		}},
		{"garbage", func(w http.ResponseWriter, id string) { io.WriteString(w, "{{{") }, func(err error) bool { return strings.Contains(err.Error(), "bad reply") }},
		{"wrong id", func(w http.ResponseWriter, id string) { io.WriteString(w, `{"result":1,"error":null,"id":999999}`) }, func(err error) bool { return strings.Contains(err.Error(), "id") }},
		{"too large", func(w http.ResponseWriter, id string) {
			io.WriteString(w, `{"result":"`+strings.Repeat("a", 2000)+`","error":null,"id":`+id+`}`)
		}, func(err error) bool { return errors.Is(err, ErrReplyTooLarge) }},
		{"wrong type", func(w http.ResponseWriter, id string) { io.WriteString(w, `{"result":[1],"error":null,"id":`+id+`}`) }, func(err error) bool { return strings.Contains(err.Error(), "bad result") }},
		{"bad hash", func(w http.ResponseWriter, id string) { io.WriteString(w, `{"result":"abc","error":null,"id":`+id+`}`) }, func(err error) bool { return strings.Contains(err.Error(), "64 hex") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := fakeNode(t, func(w http.ResponseWriter, req map[string]any) { tc.reply(w, jsonNum(req["id"])) })
			var mu sync.Mutex
			var observed []string
			c, err := NewClient(u, WithMaxReply(1024), WithObserver(func(m string, d time.Duration, err error) {
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					observed = append(observed, m)
				}
			}))
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.BestBlockHash(context.Background())
			if err == nil || !tc.check(err) {
				t.Fatalf("got %v (%T)", err, err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error leaks the password: %v", err)
			}
			if !strings.HasPrefix(err.Error(), "getbestblockhash: ") {
				t.Errorf("error %q, want the method as prefix", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(observed) != 1 || observed[0] != "getbestblockhash" {
				t.Errorf("observer saw failures %v, want [getbestblockhash]", observed)
			}
		})
	}
}

func TestClientTimeout(t *testing.T) {
	release := make(chan struct{})
	u := fakeNode(t, func(w http.ResponseWriter, req map[string]any) { <-release })
	defer close(release)
	c, err := NewClient(u, WithTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.BestBlockHash(context.Background())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("timeout took %s", d)
	}
}

func TestNewClientURL(t *testing.T) {
	c, err := NewClient("http://alice:hunter2@127.0.0.1:18443")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.String(); strings.Contains(got, "hunter2") || strings.Contains(got, "alice") || !strings.Contains(got, "127.0.0.1:18443") {
		t.Fatalf("String() = %q, want host without credentials", got)
	}
	for _, bad := range []string{"", "127.0.0.1:8332", "ftp://u:p@h:1", "http://h:1", "http://u:p@h", "http://u:p@[::1:1", "http://u:p%zz@h:1"} {
		_, err := NewClient(bad)
		if err == nil {
			t.Errorf("NewClient(%q): want an error", bad)
			continue
		}
		if strings.Contains(err.Error(), ":p@") {
			t.Errorf("NewClient(%q): error leaks the password: %v", bad, err)
		}
	}
}

func TestSubmitBlockReplies(t *testing.T) {
	for _, tc := range []struct {
		result string
		dup    bool
		ok     bool
	}{
		{`null`, false, true},
		{`"duplicate"`, true, false},
		{`"rejected: already have block 0000abcd"`, true, false},
		{`"high-hash"`, false, false},
	} {
		u := fakeNode(t, func(w http.ResponseWriter, req map[string]any) {
			io.WriteString(w, `{"result":`+tc.result+`,"error":null,"id":`+jsonNum(req["id"])+`}`)
		})
		c, _ := NewClient(u)
		err := c.SubmitBlockHex(context.Background(), "00")
		if tc.ok {
			if err != nil {
				t.Errorf("%s: got %v, want nil", tc.result, err)
			}
			continue
		}
		var rej *RejectedError
		if !errors.As(err, &rej) || rej.Duplicate() != tc.dup {
			t.Errorf("%s: got %v, want *RejectedError duplicate=%v", tc.result, err, tc.dup)
		}
	}
}

func FuzzDecodeReply(f *testing.F) {
	f.Add(200, []byte(`{"result":null,"error":null,"id":1}`))
	f.Add(500, []byte(`{"result":null,"error":{"code":-8,"message":"x"},"id":1}`))
	f.Add(200, []byte(``))
	f.Add(401, []byte(``))
	f.Add(200, []byte(`{"result":"00","id":1}`))
	f.Fuzz(func(t *testing.T, status int, data []byte) {
		var s *string
		err := decodeReply(status, data, 1, &s)
		if err == nil && status != 200 {
			// A non-200 status is only fine with a well-formed JSON-RPC body.
			var r reply
			if json.Unmarshal(data, &r) != nil {
				t.Fatalf("status %d with unparsable body accepted", status)
			}
		}
	})
}
