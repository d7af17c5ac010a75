// Command karman-lookalike is the static stand-in for the programs of the
// public images critest pulls, which package tests/criimage rebuilds
// offline. It is one binary, hard-linked into the images under each
// program's name, and acts by the name it was started as:
//
//	nginx              serves GET / with 200 on the port of the first
//	                   "listen N;" line of /etc/nginx/conf.d/default.conf
//	                   (80 without one), writes /var/run/nginx.pid, and
//	                   runs as "nginx: master process nginx -g daemon off;"
//	                   in /proc/PID/cmdline, with comm "nginx" (what
//	                   `pidof nginx` and critest's PID namespace specs read)
//	httpd-foreground   serves GET / with 200 on port 80 and says "httpd"
//	                   on stderr
//	nnp                prints "Effective uid: N" (installed setuid root)
//	pause              sleeps until SIGTERM or SIGINT
//	pgrep PATTERN      prints the PIDs whose comm matches PATTERN (-f: the
//	                   command line); exits 1 when none does
//	ipcs [-m]          lists the System V shared memory segments
//	                   (/proc/sysvipc/shm) in util-linux's layout
//
// Debian's busybox, which the images use for everything else, has no
// pgrep and no ipcs applet.
package main
