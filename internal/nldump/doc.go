// Package nldump repeats a netlink dump that the kernel reports as
// interrupted.
//
// A dump (all links, all routes) spans several messages; when the table
// changes between them, as it does while other pods start or stop, the
// kernel marks the reply NLM_F_DUMP_INTR and the netlink library returns
// what it read together with netlink.ErrDumpInterrupted. The result may
// be inconsistent, so it is read again rather than used.
package nldump
