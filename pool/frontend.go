package pool

import "strconv"

// Front-end identity: see Config.FrontEnd and the package doc.
const (
	// FrontEndBits is how many top bits of an extranonce1 and of a job id name the
	// front-end.
	FrontEndBits = 8
	// MaxFrontEnds is the highest Config.FrontEnd: front-ends of one cluster are
	// numbered 1..MaxFrontEnds.
	MaxFrontEnds = 1<<FrontEndBits - 1
	// FrontEndExtranonce1s is how many extranonce1 values, so how many subscribed
	// connections at once, one numbered front-end has: 2^24. Past it mining.subscribe
	// is refused (stratum.ErrExtranonce1Exhausted) and the miner dropped, to fail over
	// to another front-end; a value is never handed out twice.
	FrontEndExtranonce1s = 1 << (32 - FrontEndBits)
	// jobSeqBits is the width of a front-end's job sequence below its number.
	jobSeqBits = 64 - FrontEndBits
)

// JobFrontEnd returns the front-end whose pool issued a job id, as a share records it
// (hashgrid.Share.JobID): the accounting side can tell where a share was taken without
// a field of its own. ok is false for a string that is no job id of this pool.
func JobFrontEnd(jobID string) (frontEnd int, ok bool) {
	id, err := strconv.ParseUint(jobID, 16, 64)
	if err != nil || len(jobID) > 16 {
		return 0, false
	}
	return int(id >> jobSeqBits), true
}

// Extranonce1FrontEnd returns the front-end an extranonce1 of a numbered front-end
// belongs to.
func Extranonce1FrontEnd(en1 uint32) int { return int(en1 >> (32 - FrontEndBits)) }
