package sv2

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/chainhash/v2"
)

// hx joins hex fields (spaces allowed) into bytes.
func hx(fields ...string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(strings.Join(fields, ""), " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

func rep(h string, n int) string { return strings.Repeat(h, n) }

func hashOf(h string) (c chainhash.Hash) {
	copy(c[:], hx(h))
	return c
}

func u256Of(h string) (u U256) {
	copy(u[:], hx(h))
	return u
}

// Values shared by the table. Targets and hashes are little-endian: the first byte is
// the least significant.
const (
	diff1LE    = "0000000000000000000000000000000000000000000000000000ffff00000000" // 0xffff·2^208
	shareLE    = "00000000000000000000000000000000000000000000000000000000ffff0000" // 0xffff·2^224
	sriPrev    = "c835fd81d61f2b54b33a3a4c80d518352690cd58ac14fb16d98d15dd15000000"
	sriRoot    = "bdc819f67749222ad170ed32a947a3c0185438569347f32c126ba7a9a942ba62"
	seq0to31   = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	rate2e40LE = "00008053" // F32 2^40 h/s
)

type msgCase struct {
	name  string
	msg   Message
	frame []byte // header, then payload, written field by field from the spec's tables
}

var msgCases = []msgCase{
	{"SetupConnection", &SetupConnection{
		Protocol: ProtocolMining, MinVersion: 2, MaxVersion: 2,
		Flags:        FlagRequiresStandardJobs | FlagRequiresVersionRolling,
		EndpointHost: "pool.example", EndpointPort: 3333,
		Vendor: "Bitmain", HardwareVersion: "S19", Firmware: "fw-1",
	}, hx(
		"0000 00 2a0000",              // extension_type, msg_type, msg_length 42
		"00",                          // protocol
		"0200",                        // min_version
		"0200",                        // max_version
		"05000000",                    // flags
		"0c 706f6f6c2e6578616d706c65", // endpoint_host
		"050d",                        // endpoint_port 3333
		"07 4269746d61696e",           // vendor
		"03 533139",                   // hardware_version
		"04 66772d31",                 // firmware
		"00",                          // device_id
	)},
	{"SetupConnection.Success", &SetupConnectionSuccess{UsedVersion: 2, Flags: FlagRequiresExtendedChannels}, hx(
		"0000 01 060000",
		"0200",     // used_version
		"02000000", // flags
	)},
	{"SetupConnection.Error", &SetupConnectionError{Flags: FlagRequiresVersionRolling, ErrorCode: CodeUnsupportedFeatureFlags}, hx(
		"0000 02 1e0000",
		"04000000", // flags
		"19 756e737570706f727465642d666561747572652d666c616773", // error_code
	)},
	{"ChannelEndpointChanged", &ChannelEndpointChanged{ChannelID: 0x01020304}, hx(
		"0080 03 040000", // channel_msg bit set
		"04030201",
	)},
	{"Reconnect", &Reconnect{NewHost: "pool2.example", NewPort: 3334}, hx(
		"0000 04 100000",
		"0d 706f6f6c322e6578616d706c65", // new_host
		"060d",                          // new_port
	)},
	{"OpenStandardMiningChannel", &OpenStandardMiningChannel{
		RequestID: 7, UserIdentity: "alice.rig1", NominalHashRate: 1 << 40, MaxTarget: u256Of(diff1LE),
	}, hx(
		"0000 10 330000",
		"07000000",                // request_id
		"0a 616c6963652e72696731", // user_identity
		rate2e40LE,                // nominal_hash_rate
		diff1LE,                   // max_target
	)},
	{"OpenStandardMiningChannel.Success", &OpenStandardMiningChannelSuccess{
		RequestID: 7, ChannelID: 1, Target: u256Of(shareLE), ExtranoncePrefix: hx("0a0b0c0d"), GroupChannelID: 0x100,
	}, hx(
		"0000 11 310000",
		"07000000",    // request_id
		"01000000",    // channel_id
		shareLE,       // target
		"04 0a0b0c0d", // extranonce_prefix
		"00010000",    // group_channel_id
	)},
	{"OpenMiningChannel.Error", &OpenMiningChannelError{RequestID: 7, ErrorCode: CodeUnknownUser}, hx(
		"0000 12 110000",
		"07000000",
		"0c 756e6b6e6f776e2d75736572",
	)},
	{"OpenExtendedMiningChannel", &OpenExtendedMiningChannel{
		RequestID: 8, UserIdentity: "proxy", MaxTarget: u256Of(rep("ff", 32)), MinExtranonceSize: 8,
	}, hx(
		"0000 13 300000",
		"08000000",      // request_id
		"05 70726f7879", // user_identity
		"00000000",      // nominal_hash_rate 0.0: a proxy with no devices yet
		rep("ff", 32),   // max_target
		"0800",          // min_extranonce_size
	)},
	{"OpenExtendedMiningChannel.Success", &OpenExtendedMiningChannelSuccess{
		RequestID: 8, ChannelID: 2, Target: u256Of(diff1LE), ExtranonceSize: 8, ExtranoncePrefix: hx("010203"),
	}, hx(
		"0000 14 320000",
		"08000000",  // request_id
		"02000000",  // channel_id
		diff1LE,     // target
		"0800",      // extranonce_size
		"03 010203", // extranonce_prefix
		"00000000",  // group_channel_id
	)},
	{"NewMiningJob future", &NewMiningJob{ChannelID: 1, JobID: 5, Version: 0x20000000, MerkleRoot: hashOf(seq0to31)}, hx(
		"0080 15 2d0000",
		"01000000", // channel_id
		"05000000", // job_id
		"00",       // min_ntime: none
		"00000020", // version
		seq0to31,   // merkle_root
	)},
	{"NewMiningJob", &NewMiningJob{ChannelID: 1, JobID: 6, MinNTime: Some[uint32](1745596932), Version: 0x20000000, MerkleRoot: hashOf(sriRoot)}, hx(
		"0080 15 310000",
		"01000000",
		"06000000",
		"01 04b20b68", // min_ntime 1745596932
		"00000020",
		sriRoot,
	)},
	{"UpdateChannel", &UpdateChannel{ChannelID: 1, NominalHashRate: 1 << 40, MaximumTarget: u256Of(diff1LE)}, hx(
		"0080 16 280000",
		"01000000",
		rate2e40LE,
		diff1LE,
	)},
	{"UpdateChannel.Error", &UpdateChannelError{ChannelID: 1, ErrorCode: CodeInvalidChannelID}, hx(
		"0080 17 170000",
		"01000000",
		"12 696e76616c69642d6368616e6e656c2d6964",
	)},
	{"CloseChannel", &CloseChannel{ChannelID: 3, ReasonCode: "shutdown"}, hx(
		"0080 18 0d0000",
		"03000000",
		"08 73687574646f776e",
	)},
	{"SetExtranoncePrefix", &SetExtranoncePrefix{ChannelID: 2, ExtranoncePrefix: hx("1122334455667788")}, hx(
		"0080 19 0d0000",
		"02000000",
		"08 1122334455667788",
	)},
	{"SubmitSharesStandard", &SubmitSharesStandard{ChannelID: 1, SequenceNumber: 9, JobID: 1, Nonce: 244405, NTime: 1745596932, Version: 0x20000000}, hx(
		"0080 1a 180000",
		"01000000", // channel_id
		"09000000", // sequence_number
		"01000000", // job_id
		"b5ba0300", // nonce 244405
		"04b20b68", // ntime 1745596932
		"00000020", // version
	)},
	{"SubmitSharesExtended", &SubmitSharesExtended{ChannelID: 1, JobID: 1, Nonce: 102103, NTime: 1745596971, Version: 0x20000000, Extranonce: hx("0100000000000000")}, hx(
		"0080 1b 210000",
		"01000000",
		"00000000",
		"01000000",
		"d78e0100", // nonce 102103
		"2bb20b68", // ntime 1745596971
		"00000020",
		"08 0100000000000000", // extranonce
	)},
	{"SubmitShares.Success", &SubmitSharesSuccess{ChannelID: 1, LastSequenceNumber: 9, NewSubmitsAcceptedCount: 10, NewSharesSum: 1<<32 | 2}, hx(
		"0080 1c 140000",
		"01000000",
		"09000000",
		"0a000000",
		"0200000001000000", // new_shares_sum
	)},
	{"SubmitShares.Error", &SubmitSharesError{ChannelID: 1, SequenceNumber: 10, ErrorCode: CodeStaleShare}, hx(
		"0080 1d 140000",
		"01000000",
		"0a000000",
		"0b 7374616c652d7368617265",
	)},
	{"NewExtendedMiningJob", &NewExtendedMiningJob{
		ChannelID: 0x10, JobID: 6, MinNTime: Some[uint32](1745596970), Version: 0x20000000, VersionRollingAllowed: true,
		MerklePath:       []chainhash.Hash{hashOf(rep("aa", 32)), hashOf(rep("bb", 32))},
		CoinbaseTxPrefix: hx("02000000"), CoinbaseTxSuffix: hx("ffffffff"),
	}, hx(
		"0080 1f 5f0000",
		"10000000",                         // channel_id
		"06000000",                         // job_id
		"01 2ab20b68",                      // min_ntime 1745596970
		"00000020",                         // version
		"01",                               // version_rolling_allowed
		"02", rep("aa", 32), rep("bb", 32), // merkle_path
		"0400 02000000", // coinbase_tx_prefix
		"0400 ffffffff", // coinbase_tx_suffix
	)},
	{"NewExtendedMiningJob empty", &NewExtendedMiningJob{ChannelID: 2, JobID: 1, Version: 0x20000000}, hx(
		"0080 1f 130000",
		"02000000",
		"01000000",
		"00",
		"00000020",
		"00",   // version_rolling_allowed false
		"00",   // no merkle path
		"0000", // empty prefix
		"0000", // empty suffix
	)},
	{"SetNewPrevHash", &SetNewPrevHash{ChannelID: 1, JobID: 5, PrevHash: hashOf(sriPrev), MinNTime: 1745596930, NBits: 0x1b00d7c0}, hx(
		"0080 20 300000",
		"01000000",
		"05000000",
		sriPrev,    // prev_hash
		"02b20b68", // min_ntime 1745596930
		"c0d7001b", // nbits
	)},
	{"SetTarget", &SetTarget{ChannelID: 1, MaximumTarget: u256Of(diff1LE)}, hx(
		"0080 21 240000",
		"01000000",
		diff1LE,
	)},
	{"SetCustomMiningJob", &SetCustomMiningJob{
		ChannelID: 2, RequestID: 9, MiningJobToken: hx("0102"), Version: 0x20000000,
		PrevHash: hashOf(rep("11", 32)), MinNTime: 1745596930, NBits: 0x1d00ffff,
		CoinbaseTxVersion: 2, CoinbasePrefix: hx("abcdef"), CoinbaseTxInputNSequence: 0xffffffff,
		CoinbaseTxOutputs: hx("010203"), MerklePath: []chainhash.Hash{hashOf(rep("cc", 32))},
	}, hx(
		"0080 22 6d0000",
		"02000000",          // channel_id
		"09000000",          // request_id
		"02 0102",           // mining_job_token
		"00000020",          // version
		rep("11", 32),       // prev_hash
		"02b20b68",          // min_ntime
		"ffff001d",          // nbits
		"02000000",          // coinbase_tx_version
		"03 abcdef",         // coinbase_prefix
		"ffffffff",          // coinbase_tx_input_nSequence
		"0300 010203",       // coinbase_tx_outputs
		"00000000",          // coinbase_tx_locktime
		"01", rep("cc", 32), // merkle_path
	)},
	{"SetCustomMiningJob.Success", &SetCustomMiningJobSuccess{ChannelID: 2, RequestID: 9, JobID: 77}, hx(
		"0080 23 0c0000",
		"02000000",
		"09000000",
		"4d000000",
	)},
	{"SetCustomMiningJob.Error", &SetCustomMiningJobError{ChannelID: 2, RequestID: 9, ErrorCode: "stale-chain-tip"}, hx(
		"0080 24 180000",
		"02000000",
		"09000000",
		"0f 7374616c652d636861696e2d746970",
	)},
	{"SetGroupChannel", &SetGroupChannel{GroupChannelID: 0x10, ChannelIDs: []uint32{1, 2}}, hx(
		"0000 25 0e0000", // channel_msg bit clear
		"10000000",
		"0200 01000000 02000000",
	)},
	{"SetGroupChannel empty", &SetGroupChannel{GroupChannelID: 0x10}, hx(
		"0000 25 060000",
		"10000000",
		"0000",
	)},
}

// TestMessagesExactBytes checks every message against bytes written by hand from the
// spec: the frame AppendFrame writes, and the message Decode reads from it.
func TestMessagesExactBytes(t *testing.T) {
	seen := map[uint8]bool{}
	for _, c := range msgCases {
		t.Run(c.name, func(t *testing.T) {
			seen[c.msg.MsgType()] = true
			got, err := AppendFrame([]byte("x"), c.msg)
			if err != nil {
				t.Fatalf("AppendFrame: %v", err)
			}
			if want := append([]byte("x"), c.frame...); !bytes.Equal(got, want) {
				t.Fatalf("AppendFrame:\n got %x\nwant %x", got, want)
			}
			h, err := ParseHeader(c.frame)
			if err != nil {
				t.Fatal(err)
			}
			if h.MsgType != c.msg.MsgType() || Name(h.MsgType) == "" {
				t.Errorf("msg_type %#x, name %q", h.MsgType, Name(h.MsgType))
			}
			m, err := Decode(h, c.frame[HeaderSize:])
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(m, c.msg) {
				t.Errorf("Decode:\n got %+v\nwant %+v", m, c.msg)
			}
			again, err := m.Encode(nil)
			if err != nil || !bytes.Equal(again, c.frame[HeaderSize:]) {
				t.Errorf("re-encode: %x, %v", again, err)
			}
		})
	}
	for typ := 0; typ < 256; typ++ {
		if Name(uint8(typ)) != "" && !seen[uint8(typ)] {
			t.Errorf("no table case for %s", Name(uint8(typ)))
		}
	}
}

// TestChannelMessages checks the channel_msg column of chapter 8: exactly the
// channel messages implement ChannelMessage, and their payload starts with the
// channel_id Channel returns.
func TestChannelMessages(t *testing.T) {
	want := map[uint8]bool{
		0x03: true, 0x15: true, 0x16: true, 0x17: true, 0x18: true, 0x19: true, 0x1a: true,
		0x1b: true, 0x1c: true, 0x1d: true, 0x1f: true, 0x20: true, 0x21: true, 0x22: true,
		0x23: true, 0x24: true,
	}
	for typ := 0; typ < 256; typ++ {
		if got := IsChannelMsg(uint8(typ)); got != want[uint8(typ)] {
			t.Errorf("IsChannelMsg(%#x) = %t", typ, got)
		}
	}
	for _, c := range msgCases {
		h, _ := ParseHeader(c.frame)
		cm, ok := c.msg.(ChannelMessage)
		if ok != want[h.MsgType] || h.ChannelMsg() != want[h.MsgType] {
			t.Errorf("%s: ChannelMessage %t, header bit %t", c.name, ok, h.ChannelMsg())
			continue
		}
		if ok && binary.LittleEndian.Uint32(c.frame[HeaderSize:]) != cm.Channel() {
			t.Errorf("%s: payload starts %x, Channel() = %d", c.name, c.frame[HeaderSize:HeaderSize+4], cm.Channel())
		}
	}
}

// TestTruncated cuts every payload at every offset: each must fail as truncated,
// through the message's Decode and through the frame dispatch.
func TestTruncated(t *testing.T) {
	for _, c := range msgCases {
		p := c.frame[HeaderSize:]
		h, _ := ParseHeader(c.frame)
		for i := 0; i < len(p); i++ {
			m := New(c.msg.MsgType())
			err := m.Decode(p[:i])
			var de *DecodeError
			if !errors.Is(err, ErrTruncated) || !errors.As(err, &de) || de.Msg != Name(h.MsgType) {
				t.Errorf("%s cut at %d: %v", c.name, i, err)
			}
			h.Length = uint32(i)
			if _, err := Decode(h, p[:i]); !errors.Is(err, ErrTruncated) {
				t.Errorf("%s cut at %d, framed: %v", c.name, i, err)
			}
		}
	}
}

// TestTrailing adds a byte after the last field: the spec has no optional tail
// without a negotiated extension.
func TestTrailing(t *testing.T) {
	for _, c := range msgCases {
		p := append(append([]byte(nil), c.frame[HeaderSize:]...), 0)
		err := New(c.msg.MsgType()).Decode(p)
		var de *DecodeError
		if !errors.Is(err, ErrTrailing) || !errors.As(err, &de) || de.Offset != len(p)-1 {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

// TestDecodeLimits feeds each length limit and OPTION prefix one past what is allowed.
func TestDecodeLimits(t *testing.T) {
	for _, c := range []struct {
		name    string
		msg     Message
		payload []byte
		want    error
	}{
		{"B0_32 of 33", new(SetExtranoncePrefix), hx("02000000 21", rep("00", 33)), ErrLength},
		{"B0_32 of 255 in SubmitSharesExtended", new(SubmitSharesExtended), hx(rep("00", 24), "ff", rep("00", 255)), ErrLength},
		{"OPTION prefix 2", new(NewMiningJob), hx("01000000 05000000 02 04b20b68 00000020", seq0to31), ErrOption},
		{"OPTION prefix ff", new(NewExtendedMiningJob), hx("01000000 05000000 ff"), ErrOption},
		{"SEQ0_64K longer than the payload", new(SetGroupChannel), hx("10000000 ffff 01000000"), ErrTruncated},
		{"SEQ0_255 longer than the payload", new(NewExtendedMiningJob), hx("01000000 05000000 00 00000020 01 ff", rep("aa", 32)), ErrTruncated},
	} {
		if err := c.msg.Decode(c.payload); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// TestBoolHighBits: the spec lets senders set BOOL's seven high bits and tells
// receivers to read only the low one.
func TestBoolHighBits(t *testing.T) {
	for b, want := range map[byte]bool{0x00: false, 0x01: true, 0xfe: false, 0x03: true, 0x80: false} {
		var m NewExtendedMiningJob
		if err := m.Decode(hx("02000000 01000000 00 00000020", hex.EncodeToString([]byte{b}), "00 0000 0000")); err != nil {
			t.Fatal(err)
		}
		if m.VersionRollingAllowed != want {
			t.Errorf("BOOL %#02x read as %t", b, m.VersionRollingAllowed)
		}
	}
}

// TestEncodeLimits: a field over its type's limit is refused, naming the field, and
// the buffer comes back as it was given.
func TestEncodeLimits(t *testing.T) {
	long := strings.Repeat("x", 256)
	for _, c := range []struct {
		msg   Message
		field string
	}{
		{&SetupConnection{Vendor: long}, "vendor"},
		{&OpenStandardMiningChannel{UserIdentity: long}, "user_identity"},
		{&SubmitSharesExtended{Extranonce: make([]byte, 33)}, "extranonce"},
		{&OpenExtendedMiningChannelSuccess{ExtranoncePrefix: make([]byte, 33)}, "extranonce_prefix"},
		{&SetCustomMiningJob{MiningJobToken: make([]byte, 256)}, "mining_job_token"},
		{&SetCustomMiningJob{CoinbaseTxOutputs: make([]byte, 1<<16)}, "coinbase_tx_outputs"},
		{&NewExtendedMiningJob{CoinbaseTxPrefix: make([]byte, 1<<16)}, "coinbase_tx_prefix"},
		{&NewExtendedMiningJob{MerklePath: make([]chainhash.Hash, 256)}, "merkle_path"},
		{&SetGroupChannel{ChannelIDs: make([]uint32, 1<<16)}, "channel_ids"},
		{&SubmitSharesError{ErrorCode: long}, "error_code"},
	} {
		dst := []byte("keep")
		out, err := c.msg.Encode(dst)
		if !errors.Is(err, ErrLength) || !strings.Contains(err.Error(), c.field) || string(out) != "keep" {
			t.Errorf("%T: %q, %v", c.msg, out, err)
		}
		out, err = AppendFrame(dst, c.msg)
		if !errors.Is(err, ErrLength) || string(out) != "keep" {
			t.Errorf("%T framed: %q, %v", c.msg, out, err)
		}
	}
}

// maximal fills every variable field of m to its type's limit: strings of 255 bytes,
// set options, full sequences, and byte fields at the largest length that encodes.
func maximal(t *testing.T, m Message) {
	t.Helper()
	v := reflect.ValueOf(m).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		switch {
		case f.Kind() == reflect.String:
			f.SetString(strings.Repeat("s", MaxStr0255))
		case f.Type() == reflect.TypeOf(Option[uint32]{}):
			f.Set(reflect.ValueOf(Some[uint32](1)))
		case f.Type() == reflect.TypeOf([]chainhash.Hash{}):
			f.Set(reflect.ValueOf(make([]chainhash.Hash, MaxSeq0255)))
		case f.Type() == reflect.TypeOf([]uint32{}):
			f.Set(reflect.ValueOf(make([]uint32, MaxSeq064K)))
		case f.Type() == reflect.TypeOf([]byte{}):
			for _, n := range []int{MaxB064K, MaxB0255, MaxB032} { // no message has a B0_16M
				f.SetBytes(make([]byte, n))
				if _, err := m.Encode(nil); err == nil {
					break
				}
			}
		}
	}
}

// TestMaxLen checks the largest payload stated for each type against the encoding of
// a message with every variable field full.
func TestMaxLen(t *testing.T) {
	for typ := 0; typ < 256; typ++ {
		m := New(uint8(typ))
		if m == nil {
			if MaxLen(uint8(typ)) != 0 {
				t.Errorf("MaxLen(%#x) of an unknown type", typ)
			}
			continue
		}
		maximal(t, m)
		p, err := m.Encode(nil)
		if err != nil {
			t.Fatalf("%s: %v", Name(uint8(typ)), err)
		}
		if len(p) != MaxLen(uint8(typ)) {
			t.Errorf("%s: largest payload %d bytes, MaxLen %d", Name(uint8(typ)), len(p), MaxLen(uint8(typ)))
		}
		if err := New(uint8(typ)).Decode(p); err != nil {
			t.Errorf("%s: largest payload does not decode: %v", Name(uint8(typ)), err)
		}
	}
}
