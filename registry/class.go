package registry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
)

// Class is one workload class of the classification: what an operator may declare a
// device group to be doing.
type Class struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Industry is the industry classification code, prefixed by its scheme, for example
	// "ISIC4:6311".
	Industry string `json:"industry"`
	// PositiveList says whether the class is on the list of permitted activities.
	PositiveList bool `json:"on_positive_list"`
	// ProofOfWork says that accepted pool shares are expected from the class; shares from
	// any other class are a discrepancy.
	ProofOfWork bool `json:"proof_of_work"`
	// Jobs says that AI job records are expected from the class; job records from any
	// other class are a discrepancy.
	Jobs bool `json:"jobs"`
}

// Classes is a classification: the built-in classes plus any the operator added.
type Classes struct {
	byID   map[string]Class
	Scheme string
}

// ClassUndeclared names energy and work that no declared workload accounts for.
const ClassUndeclared = "undeclared"

// classIDPattern keeps class ids short and safe to show anywhere.
var classIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// DefaultClasses returns the built-in classification. The industry codes are ISIC Rev.4
// classes: 6311 (data processing, hosting and related activities), 6399 (other
// information service activities n.e.c.) and 7210 (research and experimental development
// on natural sciences and engineering). They are defaults: a jurisdiction's own list
// replaces them through a class file.
func DefaultClasses() *Classes {
	c := &Classes{byID: map[string]Class{}, Scheme: "ISIC Rev.4"}
	for _, k := range []Class{
		{ID: "pow-mining", Name: "Proof-of-work mining", Industry: "ISIC4:6399", PositiveList: true, ProofOfWork: true},
		{ID: "chain-validation", Name: "Blockchain validation (full node, validator)", Industry: "ISIC4:6311", PositiveList: true},
		{ID: "ai-training", Name: "AI model training", Industry: "ISIC4:7210", PositiveList: true, Jobs: true},
		{ID: "ai-inference", Name: "AI inference serving", Industry: "ISIC4:6311", PositiveList: true, Jobs: true},
		{ID: "storage", Name: "Data storage and hosting", Industry: "ISIC4:6311", PositiveList: true},
		{ID: "general-compute", Name: "General-purpose compute", Industry: "ISIC4:6311", PositiveList: true},
	} {
		c.byID[k.ID] = k
	}
	return c
}

// classFile is the format of an operator's class file (JSON).
type classFile struct {
	Scheme  string  `json:"scheme"`
	Classes []Class `json:"classes"`
}

// MaxClassFileBytes bounds a class file.
const MaxClassFileBytes = 1 << 20

// Extend adds the classes of an operator's class file (JSON: {"scheme": ..., "classes":
// [...]}) to c. A class whose id is already known replaces it, so an operator can take a
// built-in class off the positive list or change its code; the same id twice in one file
// is an error.
func (c *Classes) Extend(r io.Reader) error {
	data, err := io.ReadAll(io.LimitReader(r, MaxClassFileBytes+1))
	if err != nil {
		return fmt.Errorf("classes: %w", err)
	}
	if len(data) > MaxClassFileBytes {
		return fmt.Errorf("classes: file larger than %d bytes", MaxClassFileBytes)
	}
	var f classFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return fmt.Errorf("classes: %w", err)
	}
	seen := map[string]bool{}
	for i, k := range f.Classes {
		if !classIDPattern.MatchString(k.ID) {
			return fmt.Errorf("classes: class %d: bad id %q (want lowercase letters, digits and dashes)", i+1, k.ID)
		}
		if k.ID == ClassUndeclared {
			return fmt.Errorf("classes: class %d: id %q is reserved", i+1, k.ID)
		}
		if seen[k.ID] {
			return fmt.Errorf("classes: class %d: duplicate id %q", i+1, k.ID)
		}
		seen[k.ID] = true
		if k.Name == "" || k.Industry == "" {
			return fmt.Errorf("classes: class %q: name and industry are required", k.ID)
		}
	}
	for _, k := range f.Classes {
		c.byID[k.ID] = k
	}
	if f.Scheme != "" {
		c.Scheme = f.Scheme
	}
	return nil
}

// LoadClasses returns the built-in classes extended by the file at path ("" for none).
func LoadClasses(path string) (*Classes, error) {
	c := DefaultClasses()
	if path == "" {
		return c, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("classes: %w", err)
	}
	defer f.Close()
	if err := c.Extend(f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Get returns the class with the given id, or an error listing the known ones.
func (c *Classes) Get(id string) (Class, error) {
	k, ok := c.byID[id]
	if !ok {
		return Class{}, fmt.Errorf("unknown workload class %q (known: %v)", id, c.IDs())
	}
	return k, nil
}

// IDs returns the known class ids, sorted.
func (c *Classes) IDs() []string {
	ids := make([]string, 0, len(c.byID))
	for id := range c.byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// All returns the known classes sorted by id.
func (c *Classes) All() []Class {
	out := make([]Class, 0, len(c.byID))
	for _, id := range c.IDs() {
		out = append(out, c.byID[id])
	}
	return out
}
