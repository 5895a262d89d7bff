package sandbox

import (
	"io"
	"io/fs"
	"testing"
	"testing/fstest"
)

// TestInputFS checks the inputs' file system against the fs.FS contract, and that it
// holds nothing but the inputs.
func TestInputFS(t *testing.T) {
	fsys := inputFS{"a.csv": []byte("1,2,3\n"), "b.txt": []byte("bee"), "empty": nil}
	if err := fstest.TestFS(fsys, "a.csv", "b.txt", "empty"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"../a.csv", "/a.csv", "c.txt", "a.csv/x"} {
		if f, err := fsys.Open(name); err == nil {
			f.Close()
			t.Errorf("Open(%q) succeeded", name)
		}
	}
	f, err := fsys.Open("b.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, ok := f.(io.Writer); ok {
		t.Error("an input file has a Write method")
	}
	if fi, _ := f.Stat(); fi.Mode().Perm()&0o222 != 0 {
		t.Errorf("input mode %v is writable", fi.Mode())
	}
	if entries, err := fs.ReadDir(fsys, "."); err != nil || len(entries) != 3 {
		t.Errorf("ReadDir(.) = %d entries, %v", len(entries), err)
	}
}
