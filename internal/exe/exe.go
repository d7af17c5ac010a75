// Package exe checks the helper programs that karman execs (karman-stage1,
// karman-full), which run as root with the caller's privileges: each must
// be an executable regular file that no user but root, or the caller,
// could replace.
package exe

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Trusted returns p as an absolute path if it names an executable regular
// file owned by root or by the caller and writable by its owner only.
func Trusted(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	var st unix.Stat_t
	if err := unix.Stat(abs, &st); err != nil {
		return "", &os.PathError{Op: "stat", Path: abs, Err: err}
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG || st.Mode&0o111 == 0:
		return "", fmt.Errorf("%s is not an executable file", abs)
	case st.Mode&0o022 != 0 || st.Uid != 0 && st.Uid != uint32(os.Getuid()):
		return "", fmt.Errorf("%s could be replaced by another user (owner %d, mode %o); make it owned by root and not group- or world-writable", abs, st.Uid, st.Mode&0o7777)
	}
	return abs, nil
}

// Beside returns the path of the program name in the directory of the
// running executable, and whether a file is there.
func Beside(name string) (string, bool) {
	self, err := os.Executable()
	if err != nil {
		return "", false
	}
	p := filepath.Join(filepath.Dir(self), name)
	_, err = os.Stat(p)
	return p, err == nil
}
