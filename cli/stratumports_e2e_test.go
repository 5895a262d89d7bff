package cli

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/node/regtest"
)

// TestStratumPortsAndTLS runs the pool on a real btcd with three Stratum ports: the
// pool's default, one with a start difficulty of its own, and one over TLS with a
// certificate made here. A TLS client subscribes, authorizes and gets a job; a miner on
// the second port starts at that port's difficulty; the first port keeps the pool's.
func TestStratumPortsAndTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts btcd")
	}
	certFile, keyFile, roots := selfSignedCert(t)
	btcd := regtest.StartT(t)
	const portDiff = 0.25
	r, stopPool := startPool(t, PoolConfig{
		Nodes: []string{btcd.RPCURL()}, Network: "regtest", PayoutAddress: regtest.TestAddress(),
		Stratum: "127.0.0.1:0", API: "127.0.0.1:0", Data: t.TempDir(), Tag: "/ports/", LogLevel: "info",
		StratumPorts: []StratumPort{{Listen: "127.0.0.1:0", StartDiff: portDiff}, {Listen: "127.0.0.1:0", TLS: true}},
		TLSCert:      certFile, TLSKey: keyFile,
	})
	defer stopPool()
	if len(r.StratumPorts) != 3 || r.StratumPorts[0] != r.Stratum {
		t.Fatalf("ports %v (first %s)", r.StratumPorts, r.Stratum)
	}
	user := regtest.TestAddress() + ".w"

	// TLS: a real crypto/tls client that trusts only the operator's certificate.
	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", r.StratumPorts[2],
		&tls.Config{RootCAs: roots, ServerName: "pool.test", MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	defer tc.Close()
	tlsDiff, tlsr := handshake(t, tc, user)

	plain, err := net.DialTimeout("tcp", r.StratumPorts[1], 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if d, _ := handshake(t, plain, user); d != portDiff {
		t.Errorf("a miner on the port with start difficulty %g starts at %g", portDiff, d)
	}
	first, err := net.DialTimeout("tcp", r.StratumPorts[0], 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if d, _ := handshake(t, first, user); d == portDiff || d != tlsDiff {
		t.Errorf("the first port starts at %g, the TLS port at %g: want the pool's default on both, not the other port's %g", d, tlsDiff, portDiff)
	}
	// A new block reaches the TLS miner too: broadcasts fall back from the raw
	// descriptor write to the TLS connection's own.
	var hashes []string
	if err := btcd.Client().Call(context.Background(), "generate", []any{1}, &hashes); err != nil {
		t.Fatalf("generate: %v", err)
	}
	tc.SetDeadline(time.Now().Add(60 * time.Second))
	for {
		line, err := tlsr.ReadBytes('\n')
		if err != nil {
			t.Fatalf("TLS miner: no clean job after a new block: %v", err)
		}
		var m struct {
			Method string            `json:"method"`
			Params []json.RawMessage `json:"params"`
		}
		json.Unmarshal(line, &m)
		if m.Method == "mining.notify" && len(m.Params) == 9 && string(m.Params[8]) == "true" {
			break
		}
	}

	// Plain Stratum on the TLS port is no TLS handshake: the pool must not hand it work.
	raw, err := net.DialTimeout("tcp", r.StratumPorts[2], 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	raw.Write([]byte(`{"id":1,"method":"mining.subscribe","params":[]}` + "\n"))
	if line, _ := bufio.NewReader(raw).ReadString('\n'); json.Valid([]byte(line)) {
		t.Errorf("plain Stratum on the TLS port was answered: %q", line)
	}
}

// handshake subscribes and authorizes user over c and reads until the first job; it
// returns the difficulty the pool set and the reader of c.
func handshake(t *testing.T, c net.Conn, user string) (float64, *bufio.Reader) {
	t.Helper()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	req, _ := json.Marshal(map[string]any{"id": 2, "method": "mining.authorize", "params": []string{user, "x"}})
	if _, err := c.Write([]byte(`{"id":1,"method":"mining.subscribe","params":["ports-test/1"]}` + "\n" + string(req) + "\n")); err != nil {
		t.Fatalf("write: %v", err)
	}
	br := bufio.NewReader(c)
	diff := 0.0
	authorized := false
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			t.Fatalf("read (authorized %v, difficulty %g): %v", authorized, diff, err)
		}
		var m struct {
			ID     *int              `json:"id"`
			Method string            `json:"method"`
			Params []json.RawMessage `json:"params"`
			Result json.RawMessage   `json:"result"`
		}
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("bad line %q: %v", line, err)
		}
		switch {
		case m.ID != nil && *m.ID == 2:
			if string(m.Result) != "true" {
				t.Fatalf("authorize refused: %s", line)
			}
			authorized = true
		case m.Method == "mining.set_difficulty" && len(m.Params) == 1:
			json.Unmarshal(m.Params[0], &diff)
		case m.Method == "mining.notify":
			if !authorized || diff == 0 {
				t.Fatalf("job before authorize and difficulty: %s", line)
			}
			return diff, br
		}
	}
}

// selfSignedCert writes a certificate for pool.test and 127.0.0.1 and its key, as an
// operator would supply them, and returns the files and a pool trusting it.
func selfSignedCert(t *testing.T) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pool.test"},
		DNSNames: []string{"pool.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	roots = x509.NewCertPool()
	roots.AddCert(cert)
	return certFile, keyFile, roots
}
