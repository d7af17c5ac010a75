// Package pagecache lets tests check durability with the real kernel: a
// file whose data was fsynced has no dirty and no under-writeback pages
// left in the page cache (cachestat(2), Linux 6.5+), while one that was
// only written keeps dirty pages until the flusher runs (30 s by default).
//
// It cannot simulate a power loss; it proves that the data of a file had
// reached the disk when the call that wrote it returned.
package pagecache
