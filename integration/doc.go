// Package integration holds the system tests of the firmware: they build
// the real passerelle and passerellectl binaries once per test binary and
// run them as the box does, in the lab of pkg/lab (a virtual school
// network in network namespaces) or as PID 1 of new namespaces. They need
// root and skip without it, and in -short mode.
//
// The tests wait on the daemon's structured log events (`--log-format
// json`, the attribute "event"; see docs/architecture.md), never on the
// wording of a message.
package integration
