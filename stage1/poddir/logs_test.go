package poddir

import (
	"bytes"
	"testing"
	"time"
)

func TestLogRecordRoundTrip(t *testing.T) {
	at := time.Date(2026, 12, 7, 23, 59, 1, 123456789, time.UTC)
	for _, tc := range []struct {
		stream  string
		partial bool
		text    string
	}{
		{LogStdout, false, "hello world"},
		{LogStderr, true, "a part "},
		{LogStdout, false, ""},
		{LogStdout, false, "2026-01-01T00:00:00Z stdout F nested"},
	} {
		b := AppendLogRecord(nil, at, tc.stream, tc.partial, []byte(tc.text))
		if bytes.Count(b, []byte{'\n'}) != 1 || b[len(b)-1] != '\n' {
			t.Fatalf("record %q is not one line", b)
		}
		r, ok := ParseLogRecord(b[:len(b)-1])
		if !ok || !r.Time.Equal(at) || r.Stream != tc.stream || r.Partial != tc.partial || string(r.Text) != tc.text {
			t.Errorf("%q parsed as %+v, %v", b, r, ok)
		}
	}
	if want := "2026-12-07T23:59:01.123456789Z stdout F hi\n"; string(AppendLogRecord(nil, at, LogStdout, false, []byte("hi"))) != want {
		t.Errorf("not the CRI format %q", want)
	}
	for _, line := range []string{"plain output", "2026-12-07T23:59:01Z stdin F x", "2026-12-07T23:59:01Z stdout X x", "notatime stdout F x"} {
		if _, ok := ParseLogRecord([]byte(line)); ok {
			t.Errorf("%q parsed as a record", line)
		}
	}
}

func TestLogText(t *testing.T) {
	at := time.Now()
	var log []byte
	log = AppendLogRecord(log, at, LogStdout, true, []byte("ab"))
	log = AppendLogRecord(log, at, LogStdout, false, []byte("c"))
	log = AppendLogRecord(log, at, LogStderr, false, []byte(""))
	log = AppendLogRecord(log, at, LogStdout, true, []byte("no newline"))
	if got, want := string(LogText(log)), "abc\n\nno newline"; got != want {
		t.Errorf("LogText = %q, want %q", got, want)
	}
	if got := string(LogText([]byte("raw\nold output"))); got != "raw\nold output" {
		t.Errorf("LogText of a raw log = %q", got)
	}
}
