package hashgrid_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/hashgrid/hashgrid"
)

func TestHTTPStatusTable(t *testing.T) {
	want := map[string]int{
		hashgrid.ECONFLICT:     409,
		hashgrid.EINTERNAL:     500,
		hashgrid.EINVALID:      400,
		hashgrid.ENOTALLOWED:   405,
		hashgrid.ENOTFOUND:     404,
		hashgrid.ERATELIMITED:  429,
		hashgrid.EUNAUTHORIZED: 401,
		hashgrid.EUNAVAILABLE:  503,
		"no-such-code":         500,
	}
	for code, st := range want {
		if got := hashgrid.HTTPStatus(code); got != st {
			t.Errorf("HTTPStatus(%q) = %d, want %d", code, got, st)
		}
	}
}

// errorReply answers err through WriteHTTPError and returns the status and decoded body.
func errorReply(t *testing.T, err error) (int, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	hashgrid.WriteHTTPError(rec, httptest.NewRequest("GET", "/x", nil), nil, err)
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var body map[string]any
	if e := json.Unmarshal(rec.Body.Bytes(), &body); e != nil {
		t.Fatalf("body %q: %v", rec.Body, e)
	}
	return rec.Code, body
}

func TestWriteHTTPErrorShape(t *testing.T) {
	for _, tc := range []struct {
		err     error
		status  int
		code    string
		message string
	}{
		{hashgrid.Errorf(hashgrid.ENOTFOUND, "no shares from %s", "bc1qx"), 404, "not_found", "no shares from bc1qx"},
		{fmt.Errorf("load: %w", hashgrid.Errorf(hashgrid.ECONFLICT, "balance too low")), 409, "conflict", "balance too low"},
		// The detail of an internal error stays in the log.
		{fmt.Errorf("sqlite: disk I/O error at /secret/path"), 500, "internal", "internal error"},
		{&hashgrid.Error{Code: hashgrid.EUNAVAILABLE, Message: "node down", Err: fmt.Errorf("dial 10.0.0.1:8332")}, 503, "unavailable", "node down"},
	} {
		st, body := errorReply(t, tc.err)
		want := map[string]any{"error": map[string]any{"code": tc.code, "message": tc.message}}
		if st != tc.status || !reflect.DeepEqual(body, want) {
			t.Errorf("%v: got %d %v, want %d %v", tc.err, st, body, tc.status, want)
		}
		raw, _ := json.Marshal(body)
		back, ok := hashgrid.ParseErrorReply(raw)
		if !ok || back.Code != tc.code || back.Message != tc.message {
			t.Errorf("ParseErrorReply(%s) = %v, %v", raw, back, ok)
		}
	}
	if _, ok := hashgrid.ParseErrorReply([]byte(`{"error":"not found","code":"not_found"}`)); ok {
		t.Error("ParseErrorReply took the old flat shape")
	}
}

func TestMuxAnswersItsOwnRefusalsInTheOneShape(t *testing.T) {
	m := hashgrid.NewMux(nil)
	m.HandleFunc("GET /api/v1/things/{id}", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	m.HandleFunc("POST /api/v1/things", func(w http.ResponseWriter, r *http.Request) {})
	srv := httptest.NewServer(m)
	defer srv.Close()
	for _, tc := range []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{"GET", "/nowhere", 404, "not_found", ""},
		{"DELETE", "/api/v1/things/7", 405, "method_not_allowed", "GET, HEAD"},
		{"GET", "/api/v1/things", 405, "method_not_allowed", "POST"},
		{"GET", "/api/v1/things/7", 200, "", ""},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var rep hashgrid.ErrorReply
		json.NewDecoder(resp.Body).Decode(&rep)
		resp.Body.Close()
		if resp.StatusCode != tc.status || rep.Error.Code != tc.code || resp.Header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: got %d %q Allow %q, want %d %q Allow %q", tc.method, tc.path, resp.StatusCode, rep.Error.Code,
				resp.Header.Get("Allow"), tc.status, tc.code, tc.allow)
		}
	}
	if got, want := m.Patterns(), []string{"GET /api/v1/things/{id}", "POST /api/v1/things"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Patterns() = %q, want %q", got, want)
	}
}
