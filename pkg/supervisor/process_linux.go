package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

func (c *Command) validate() error {
	if !filepath.IsAbs(c.Path) {
		return fmt.Errorf("command %q: path must be absolute", c.Path)
	}
	return nil
}

// process is one run of an external child. The child leads its own
// process group, so stopping it reaches whatever it forked; it gets
// SIGKILL if the daemon dies (Pdeathsig).
type process struct {
	cmd *exec.Cmd
	ch  chan exit
}

// startProcess starts c with its stdout and stderr copied into the rings
// (and logged line by line at debug level).
//
// The pipes are ours, not os/exec's: exec.Cmd.Wait would otherwise wait
// for every grandchild holding the pipe to exit before reporting the
// child's exit.
func startProcess(c *Command, stdout, stderr *Ring, log *slog.Logger, tr Tracker) (*process, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("stderr pipe: %w", err)
	}
	cmd := exec.Command(c.Path, c.Args...)
	cmd.Env, cmd.Dir = c.Env, c.Dir
	cmd.Stdout, cmd.Stderr = outW, errW
	// Pdeathsig fires when the thread that forked the child exits. Go only
	// ends threads whose goroutine exited while locked to them, and the
	// supervisor never locks its goroutines, so in practice it fires when
	// the daemon dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, err
	}
	if tr != nil {
		tr.Track(cmd.Process.Pid)
	}
	p := &process{cmd: cmd, ch: make(chan exit, 1)}
	go capture(outR, stdout, log, "stdout")
	go capture(errR, stderr, log, "stderr")
	go func() {
		err := cmd.Wait()
		// Whatever the child left behind in its group goes with it, so
		// a restarted service never meets its predecessor's leftovers.
		_ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		if tr != nil {
			tr.Untrack(cmd.Process.Pid)
		}
		p.ch <- describeExit(err, cmd.ProcessState)
	}()
	return p, nil
}

func describeExit(err error, st *os.ProcessState) exit {
	if st == nil {
		return exit{code: -1, desc: "wait: " + err.Error()}
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return exit{code: -1, desc: "signal: " + ws.Signal().String()}
	}
	return exit{code: st.ExitCode(), desc: fmt.Sprintf("exit code %d", st.ExitCode())}
}

// capture copies one output stream of a child until every holder of the
// pipe closed it.
func capture(r *os.File, ring *Ring, log *slog.Logger, stream string) {
	defer r.Close()
	br := bufio.NewReaderSize(r, 4096)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			ring.Write(line)
			if log.Enabled(context.Background(), slog.LevelDebug) {
				log.Debug("service output", "stream", stream, "line", string(trimNewline(line)))
			}
		}
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				log.Debug("service output ended", "stream", stream, "err", err)
			}
			return
		}
	}
}

func trimNewline(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		return b[:n-1]
	}
	return b
}

func (p *process) pid() int            { return p.cmd.Process.Pid }
func (p *process) exited() <-chan exit { return p.ch }
func (p *process) terminate()          { _ = unix.Kill(-p.cmd.Process.Pid, unix.SIGTERM) }
func (p *process) kill()               { _ = unix.Kill(-p.cmd.Process.Pid, unix.SIGKILL) }
