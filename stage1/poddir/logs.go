package poddir

import (
	"bytes"
	"syscall"
	"time"
)

// An app's log, logs/<app>.log, is one record per line in the format of
// the Kubernetes CRI's container logs, which the supervisor appends to
// across the app's restarts:
//
//	2006-01-02T15:04:05.999999999Z07:00 stdout F text of one line
//
// the time the supervisor read it, the stream (LogStdout or LogStderr), F
// for a full line or P for part of one (a line longer than MaxLogLine,
// or the end of the output without a newline), and the text without its
// newline.
const (
	LogStdout = "stdout"
	LogStderr = "stderr"
	// MaxLogLine is the longest text of one record: a longer line is
	// split into P records.
	MaxLogLine = 16 << 10
)

// ReopenLogsSignal, sent to a pod's supervisor, makes it open each
// running app's log path again (O_APPEND, created if missing), so that a
// log renamed away (rotated) is followed by a new file at the path.
// Older supervisors ignore it.
const ReopenLogsSignal = syscall.Signal(35) // SIGRTMIN+1 of the kernel

// AppendLogRecord appends the record of text, read from stream at t, to
// buf.
func AppendLogRecord(buf []byte, t time.Time, stream string, partial bool, text []byte) []byte {
	buf = t.AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, ' ')
	buf = append(buf, stream...)
	if partial {
		buf = append(buf, " P "...)
	} else {
		buf = append(buf, " F "...)
	}
	buf = append(buf, text...)
	return append(buf, '\n')
}

// LogRecord is one record of an app's log.
type LogRecord struct {
	Time    time.Time
	Stream  string
	Partial bool
	Text    []byte // without the newline; shares the parsed line's memory
}

// ParseLogRecord parses line, a record without its newline; ok is false
// for a line that is not one (a log written by an older karman, which
// kept the raw output).
func ParseLogRecord(line []byte) (r LogRecord, ok bool) {
	ts, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok {
		return r, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return r, false
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok || string(stream) != LogStdout && string(stream) != LogStderr {
		return r, false
	}
	tag, text, ok := bytes.Cut(rest, []byte{' '})
	if !ok && len(rest) == 1 {
		tag, ok = rest, true // an empty text without its separator
	}
	if !ok || string(tag) != "F" && string(tag) != "P" {
		return r, false
	}
	return LogRecord{Time: t, Stream: string(stream), Partial: string(tag) == "P", Text: text}, true
}

// AppendLogText appends what the app wrote that line, a record without
// its newline, holds: its text, with a newline unless it is a part. A
// line that is not a record (a log of an older karman) is appended as it
// is, with its newline.
func AppendLogText(out, line []byte) []byte {
	r, ok := ParseLogRecord(line)
	if !ok {
		return append(append(out, line...), '\n')
	}
	out = append(out, r.Text...)
	if !r.Partial {
		out = append(out, '\n')
	}
	return out
}

// LogText is what the app wrote, as a whole log file holds it.
func LogText(log []byte) []byte {
	var out []byte
	for len(log) > 0 {
		line, rest, found := bytes.Cut(log, []byte{'\n'})
		if !found {
			if _, ok := ParseLogRecord(line); !ok {
				return append(out, line...) // raw output without a newline
			}
		}
		out = AppendLogText(out, line)
		log = rest
	}
	return out
}
