package noise

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
)

// transcriptVector is one handshake and three frames computed by a separate
// implementation of sv2-spec chapter 4 (written in Python on the BIP 324 and BIP 340
// reference code, so sharing neither btcd nor x/crypto with this package), from fixed
// keys: the initiator's ephemeral key, the responder's ephemeral key and the responder's
// static key are those of rows 1, 999 and 0 of BIP 324's packet_encoding_test_vectors.csv
// (secret key and ElligatorSwift encoding); the authority's secret key is
// SHA-256("hashgrid sv2 noise test authority"); the certificate is valid from
// 1700000000 to 1800000000 and its BIP 340 signature was made with 32 zero bytes of
// auxiliary randomness.
var transcriptVector = struct {
	authoritySecret, authorityXOnly          string
	initEPriv, initEEnc, respEPriv, respEEnc string
	respSPriv, respSEnc, cert, m1, m2        string
	c2sEmpty, c2sHashgrid, s2cBigSHA256      string
	s2cBigLen                                int
}{
	authoritySecret: "e31297bc326ea67030827026ba7d2e94efc7ee644a6ef97f0eda98db99ec03b6",
	authorityXOnly:  "8a80ac229dbc8b783e84b3c9882b777fc59079d00721f1dd266402af426d2bbe",
	initEPriv:       "61062ea5071d800bbfd59e2e8b53d47d194b095ae5a4df04936b49772ef0d4d7",
	initEEnc:        "ec0adff257bbfe500c188c80b4fdd640f6b45a482bbc15fc7cef5931deff0aa186f6eb9bba7b85dc4dcc28b28722de1e3d9108b985e2967045668f66098e475b",
	respEPriv:       "6f312890ec83bbb26798abaadd574684a53e74ccef7953b790fcc29409080246",
	respEEnc:        "a8785af31c029efc82fa9fc677d7118031358d7c6a25b5779a9b900e5ccd94aac97eb36a3c5dbcdb2ca5843cc4c2fe0aaa46d10eb3d233a81c3dde476da00eef",
	respSPriv:       "846a784f1a03dea59cc679754a60a7145542fa130e3efbd815c81e909ce32933",
	respSEnc:        "480eacf1536b52257bf8ce78d8f4ce09395d744767c6c129e7838947ee625af3245592c111275e877d5baae22584cb5f1153e67c16bcd7da767726cd0d0c846a",
	cert:            "000000f1536500d2496ba0449e47dbc88c5b9ee7c62dfc6f5d05a75be0b4189168e697158205649e7807b8567c78e118b1944e85ec58c0dbd1860e6571acd9a24aa8178c298cf4ecc50e",
	m1:              "ec0adff257bbfe500c188c80b4fdd640f6b45a482bbc15fc7cef5931deff0aa186f6eb9bba7b85dc4dcc28b28722de1e3d9108b985e2967045668f66098e475b",
	m2:              "a8785af31c029efc82fa9fc677d7118031358d7c6a25b5779a9b900e5ccd94aac97eb36a3c5dbcdb2ca5843cc4c2fe0aaa46d10eb3d233a81c3dde476da00eefcc56e921850c6d189608bea0e4c0136ebddd415a099a45819fb1e3223dfdfb2840e2715138df4399a59977e3c2d1891d12db6fc6670b93271923d69813c1867d127fce67bc371ad633d5d7ef7d0f817219c8abbbfcff17813ea5c87ba2e01440074df50a91540ce8a0103ad67119d21fa665be7782e50a2a60a46ccfd274280d4d8a51a54ff3a3f66a3c3395a3b7be4c4dc8cb7d6442cf28d4ccb2196c431aee0bae26c68c14ea65f51f",
	c2sEmpty:        "5018b9445bed5afe2917f9d4d9972b268b3d2edea5b9",
	c2sHashgrid:     "b3a6917f04af614e67f548724d9f0740ec592083ef0ec64f0e035ec621d5b56d7625d9f6c91105ddd27d9bee0ced",
	s2cBigSHA256:    "5ed8c9b3f7d98ffed9098e917014b3b1a554caae792a6221727f5929a156caf1",
	s2cBigLen:       70054,
}

// TestTranscriptVector replays transcriptVector on both sides: every byte this package
// puts on the wire, from the first handshake message to a three-chunk frame, must be the
// other implementation's.
func TestTranscriptVector(t *testing.T) {
	v := transcriptVector
	priv := func(s string) *btcec.PrivateKey { k, _ := btcec.PrivKeyFromBytes(unhex(t, s)); return k }

	auth := AuthorityFromKey(priv(v.authoritySecret))
	if ak := auth.PublicKey(); hex.EncodeToString(ak[:]) != v.authorityXOnly {
		t.Fatalf("authority key %x, want %s", ak, v.authorityXOnly)
	}
	cert, err := ParseCertificate(unhex(t, v.cert))
	if err != nil {
		t.Fatal(err)
	}
	if cert.ValidFrom != 1700000000 || cert.NotValidAfter != 1800000000 || cert.Version != 0 {
		t.Fatalf("certificate %+v", cert)
	}
	id := &Identity{Static: priv(v.respSPriv), Certificate: cert}

	ini, m1, err := initiatorWith(priv(v.initEPriv), unhex64(t, v.initEEnc))
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(m1[:]) != v.m1 {
		t.Fatalf("act 1 %x, want %s", m1, v.m1)
	}
	m2, srvSend, srvRecv, err := respondWith(m1[:], id, priv(v.respEPriv), unhex64(t, v.respEEnc), unhex64(t, v.respSEnc))
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(m2) != v.m2 {
		t.Fatalf("act 2\n%x\nwant\n%s", m2, v.m2)
	}
	hello, err := ini.readMessage2(m2)
	if err != nil {
		t.Fatal(err)
	}
	if hello.cert != cert {
		t.Fatalf("client read certificate %+v", hello.cert)
	}
	if err := hello.cert.Verify(auth.PublicKey(), hello.static, time.Unix(1750000000, 0), DefaultClockSkew); err != nil {
		t.Fatalf("certificate from the other implementation: %v", err)
	}
	if want := xOnly(id.Static.PubKey()); hello.static != want {
		t.Fatalf("client decoded static key %x, want %x", hello.static, want)
	}

	cli := newConn(nil, nil, nil, hello.send, hello.recv, DefaultMaxPayload)
	srv := newConn(nil, nil, nil, srvSend, srvRecv, DefaultMaxPayload)
	empty, err := cli.seal(Header{MsgType: 0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	named, err := cli.seal(Header{ExtensionType: 0x8000, MsgType: 0x1f, Length: 8}, []byte("hashgrid"))
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(empty) != v.c2sEmpty || hex.EncodeToString(named) != v.c2sHashgrid {
		t.Fatalf("client frames\n%x\n%x\nwant\n%s\n%s", empty, named, v.c2sEmpty, v.c2sHashgrid)
	}
	big, err := srv.seal(Header{ExtensionType: 1, MsgType: 0x15, Length: 70000}, pattern(70000))
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(big); len(big) != v.s2cBigLen || hex.EncodeToString(sum[:]) != v.s2cBigSHA256 {
		t.Fatalf("server frame: %d bytes, SHA-256 %x; want %d, %s", len(big), sum, v.s2cBigLen, v.s2cBigSHA256)
	}

	// And each side reads the other's frames.
	srv.r = bytes.NewReader(append(bytes.Clone(empty), named...))
	for _, want := range []string{"", "hashgrid"} {
		if _, p, err := srv.ReadFrame(); err != nil || string(p) != want {
			t.Fatalf("server read %q, %v; want %q", p, err, want)
		}
	}
	cli.r = bytes.NewReader(big)
	if h, p, err := cli.ReadFrame(); err != nil || h.MsgType != 0x15 || !bytes.Equal(p, pattern(70000)) {
		t.Fatalf("client read %+v, %d bytes, %v", h, len(p), err)
	}
}
