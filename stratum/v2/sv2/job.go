package sv2

import "github.com/btcsuite/btcd/chainhash/v2"

// Mining Protocol messages that hand out work (chapter 5.3.15 to 5.3.20).

// NewMiningJob (server to client) is a standard job: a fixed merkle root for one
// standard channel. Without MinNTime it is a future job, started by a SetNewPrevHash
// naming its JobID.
type NewMiningJob struct {
	ChannelID  uint32
	JobID      uint32
	MinNTime   Option[uint32]
	Version    uint32
	MerkleRoot chainhash.Hash
}

func (*NewMiningJob) MsgType() uint8    { return TypeNewMiningJob }
func (m *NewMiningJob) Channel() uint32 { return m.ChannelID }

func (m *NewMiningJob) Encode(dst []byte) ([]byte, error) {
	w := NewWriter(dst)
	w.U32(m.ChannelID)
	w.U32(m.JobID)
	WriteOption(&w, m.MinNTime, (*Writer).U32)
	w.U32(m.Version)
	w.Hash(m.MerkleRoot)
	return w.Finish("NewMiningJob")
}

func (m *NewMiningJob) Decode(p []byte) error {
	r := Reader{buf: p}
	*m = NewMiningJob{
		ChannelID:  r.U32(),
		JobID:      r.U32(),
		MinNTime:   r.OptionU32(),
		Version:    r.U32(),
		MerkleRoot: r.Hash(),
	}
	return r.Done("NewMiningJob")
}

// NewExtendedMiningJob (server to client) is an extended job for an extended or a
// group channel: the coinbase is CoinbaseTxPrefix, the extranonce prefix, the
// extranonce and CoinbaseTxSuffix, stripped of BIP 141 fields so that its hash is the
// txid.
type NewExtendedMiningJob struct {
	ChannelID             uint32
	JobID                 uint32
	MinNTime              Option[uint32]
	Version               uint32
	VersionRollingAllowed bool
	MerklePath            []chainhash.Hash // SEQ0_255[U256], deepest first
	CoinbaseTxPrefix      []byte           // B0_64K
	CoinbaseTxSuffix      []byte           // B0_64K
}

func (*NewExtendedMiningJob) MsgType() uint8    { return TypeNewExtendedMiningJob }
func (m *NewExtendedMiningJob) Channel() uint32 { return m.ChannelID }

func (m *NewExtendedMiningJob) Encode(dst []byte) ([]byte, error) {
	w := NewWriter(dst)
	w.U32(m.ChannelID)
	w.U32(m.JobID)
	WriteOption(&w, m.MinNTime, (*Writer).U32)
	w.U32(m.Version)
	w.Bool(m.VersionRollingAllowed)
	WriteSeq0255(&w, "merkle_path", m.MerklePath, (*Writer).Hash)
	w.B064K("coinbase_tx_prefix", m.CoinbaseTxPrefix)
	w.B064K("coinbase_tx_suffix", m.CoinbaseTxSuffix)
	return w.Finish("NewExtendedMiningJob")
}

func (m *NewExtendedMiningJob) Decode(p []byte) error {
	r := Reader{buf: p}
	*m = NewExtendedMiningJob{
		ChannelID:             r.U32(),
		JobID:                 r.U32(),
		MinNTime:              r.OptionU32(),
		Version:               r.U32(),
		VersionRollingAllowed: r.Bool(),
		MerklePath:            ReadSeq0255(&r, 32, (*Reader).Hash),
		CoinbaseTxPrefix:      r.B064K(),
		CoinbaseTxSuffix:      r.B064K(),
	}
	return r.Done("NewExtendedMiningJob")
}

// SetNewPrevHash (server to client) is the Mining Protocol's new block: it starts the
// future job JobID on PrevHash and makes every other job of the channel stale.
type SetNewPrevHash struct {
	ChannelID uint32
	JobID     uint32
	PrevHash  chainhash.Hash
	MinNTime  uint32
	NBits     uint32
}

func (*SetNewPrevHash) MsgType() uint8    { return TypeSetNewPrevHash }
func (m *SetNewPrevHash) Channel() uint32 { return m.ChannelID }

func (m *SetNewPrevHash) Encode(dst []byte) ([]byte, error) {
	w := NewWriter(dst)
	w.U32(m.ChannelID)
	w.U32(m.JobID)
	w.Hash(m.PrevHash)
	w.U32(m.MinNTime)
	w.U32(m.NBits)
	return w.Finish("SetNewPrevHash")
}

func (m *SetNewPrevHash) Decode(p []byte) error {
	r := Reader{buf: p}
	*m = SetNewPrevHash{
		ChannelID: r.U32(),
		JobID:     r.U32(),
		PrevHash:  r.Hash(),
		MinNTime:  r.U32(),
		NBits:     r.U32(),
	}
	return r.Done("SetNewPrevHash")
}

// SetCustomMiningJob (client to server) asks the pool to reward work on a job the
// client declared to a Job Declarator Server.
type SetCustomMiningJob struct {
	ChannelID                uint32
	RequestID                uint32
	MiningJobToken           []byte // B0_255
	Version                  uint32
	PrevHash                 chainhash.Hash
	MinNTime                 uint32
	NBits                    uint32
	CoinbaseTxVersion        uint32
	CoinbasePrefix           []byte // B0_255; the spec allows up to 8 bytes, which is a server's check
	CoinbaseTxInputNSequence uint32
	CoinbaseTxOutputs        []byte // B0_64K
	CoinbaseTxLocktime       uint32
	MerklePath               []chainhash.Hash // SEQ0_255[U256]
}

func (*SetCustomMiningJob) MsgType() uint8    { return TypeSetCustomMiningJob }
func (m *SetCustomMiningJob) Channel() uint32 { return m.ChannelID }

func (m *SetCustomMiningJob) Encode(dst []byte) ([]byte, error) {
	w := NewWriter(dst)
	w.U32(m.ChannelID)
	w.U32(m.RequestID)
	w.B0255("mining_job_token", m.MiningJobToken)
	w.U32(m.Version)
	w.Hash(m.PrevHash)
	w.U32(m.MinNTime)
	w.U32(m.NBits)
	w.U32(m.CoinbaseTxVersion)
	w.B0255("coinbase_prefix", m.CoinbasePrefix)
	w.U32(m.CoinbaseTxInputNSequence)
	w.B064K("coinbase_tx_outputs", m.CoinbaseTxOutputs)
	w.U32(m.CoinbaseTxLocktime)
	WriteSeq0255(&w, "merkle_path", m.MerklePath, (*Writer).Hash)
	return w.Finish("SetCustomMiningJob")
}

func (m *SetCustomMiningJob) Decode(p []byte) error {
	r := Reader{buf: p}
	*m = SetCustomMiningJob{
		ChannelID:                r.U32(),
		RequestID:                r.U32(),
		MiningJobToken:           r.B0255(),
		Version:                  r.U32(),
		PrevHash:                 r.Hash(),
		MinNTime:                 r.U32(),
		NBits:                    r.U32(),
		CoinbaseTxVersion:        r.U32(),
		CoinbasePrefix:           r.B0255(),
		CoinbaseTxInputNSequence: r.U32(),
		CoinbaseTxOutputs:        r.B064K(),
		CoinbaseTxLocktime:       r.U32(),
		MerklePath:               ReadSeq0255(&r, 32, (*Reader).Hash),
	}
	return r.Done("SetCustomMiningJob")
}

// SetCustomMiningJobSuccess (server to client) accepts a custom job under JobID.
type SetCustomMiningJobSuccess struct {
	ChannelID uint32
	RequestID uint32
	JobID     uint32
}

func (*SetCustomMiningJobSuccess) MsgType() uint8    { return TypeSetCustomMiningJobSuccess }
func (m *SetCustomMiningJobSuccess) Channel() uint32 { return m.ChannelID }

func (m *SetCustomMiningJobSuccess) Encode(dst []byte) ([]byte, error) {
	w := NewWriter(dst)
	w.U32(m.ChannelID)
	w.U32(m.RequestID)
	w.U32(m.JobID)
	return w.Finish("SetCustomMiningJob.Success")
}

func (m *SetCustomMiningJobSuccess) Decode(p []byte) error {
	r := Reader{buf: p}
	*m = SetCustomMiningJobSuccess{ChannelID: r.U32(), RequestID: r.U32(), JobID: r.U32()}
	return r.Done("SetCustomMiningJob.Success")
}

// SetCustomMiningJobError (server to client) refuses a custom job.
type SetCustomMiningJobError struct {
	ChannelID uint32
	RequestID uint32
	ErrorCode string
}

func (*SetCustomMiningJobError) MsgType() uint8    { return TypeSetCustomMiningJobError }
func (m *SetCustomMiningJobError) Channel() uint32 { return m.ChannelID }

func (m *SetCustomMiningJobError) Encode(dst []byte) ([]byte, error) {
	w := NewWriter(dst)
	w.U32(m.ChannelID)
	w.U32(m.RequestID)
	w.Str0255("error_code", m.ErrorCode)
	return w.Finish("SetCustomMiningJob.Error")
}

func (m *SetCustomMiningJobError) Decode(p []byte) error {
	r := Reader{buf: p}
	*m = SetCustomMiningJobError{ChannelID: r.U32(), RequestID: r.U32(), ErrorCode: r.Str0255()}
	return r.Done("SetCustomMiningJob.Error")
}
