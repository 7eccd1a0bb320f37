//go:build unix && !linux

package main

import "syscall"

// childAttr puts a child in a process group of its own, so that Ctrl-C
// reaches chaos alone, which then kills it.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
