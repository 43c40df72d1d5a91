package simulator

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"log"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// Debian's leases never time out. vCenter's do: a lease that hears neither
// HttpNfcLeaseProgress nor anything else from its client for info.leaseTimeout seconds
// (about 5 minutes) enters the error state, its URLs stop answering, and a transfer still
// running is cut off. --lease-timeout sets the time (tests use a second or two), so a
// client's keep-alive is really exercised. Registered here so main.go needs no change.

var ovapipeLeaseTimeoutSeconds float64

func init() {
	flag.Float64Var(&ovapipeLeaseTimeoutSeconds, "lease-timeout", 300,
		"seconds an import/export lease lives without HttpNfcLeaseProgress (vCenter: about 300)")
}

func ovapipeCheckLeaseTimeout() error {
	s := ovapipeLeaseTimeoutSeconds
	if math.IsNaN(s) || math.IsInf(s, 0) || s < 0.1 || s > 86400 {
		return fmt.Errorf("--lease-timeout %v: expected 0.1 to 86400 seconds", s)
	}
	return nil
}

func ovapipeLeaseTimeout() time.Duration {
	return time.Duration(ovapipeLeaseTimeoutSeconds * float64(time.Second))
}

// ovapipeLeaseClock is the activity of one lease.
type ovapipeLeaseClock struct {
	lease   *HttpNfcLease
	last    time.Time
	timer   *time.Timer
	expired chan struct{} // closed when the lease timed out
}

var (
	ovapipeLeasesMu sync.Mutex
	ovapipeLeases   = map[string]*ovapipeLeaseClock{} // by lease reference value
)

var errOvapipeLeaseTimedOut = errors.New("the lease timed out")

// ovapipeWatchLease starts the clock of a new lease and sets info.leaseTimeout.
func ovapipeWatchLease(lease *HttpNfcLease) {
	id := lease.Reference().Value
	ovapipeLeasesMu.Lock()
	defer ovapipeLeasesMu.Unlock()
	if _, known := ovapipeLeases[id]; known {
		return
	}
	if lease.Info != nil {
		lease.Info.LeaseTimeout = int32(math.Ceil(ovapipeLeaseTimeoutSeconds))
	}
	clock := &ovapipeLeaseClock{lease: lease, last: time.Now(), expired: make(chan struct{})}
	clock.timer = time.AfterFunc(ovapipeLeaseTimeout(), func() { ovapipeLeaseDue(id) })
	ovapipeLeases[id] = clock
}

// ovapipeWatchNewLeases starts the clock of every lease not yet watched (after ImportVApp,
// which creates its lease inside Debian's code).
func ovapipeWatchNewLeases() {
	nfcLease.Range(func(_, value interface{}) bool {
		if lease, ok := value.(*HttpNfcLease); ok {
			ovapipeWatchLease(lease)
		}
		return true
	})
}

// ovapipeLeaseDue runs when a lease's time may be up: it expires the lease, forgets a lease
// that was completed or aborted meanwhile, or waits for the rest of the time.
func ovapipeLeaseDue(id string) {
	ovapipeLeasesMu.Lock()
	clock, ok := ovapipeLeases[id]
	if !ok {
		ovapipeLeasesMu.Unlock()
		return
	}
	ref := clock.lease.Reference()
	if _, open := nfcLease.Load(ref); !open {
		delete(ovapipeLeases, id)
		ovapipeLeasesMu.Unlock()
		return
	}
	if rest := ovapipeLeaseTimeout() - time.Since(clock.last); rest > 0 {
		clock.timer.Reset(rest)
		ovapipeLeasesMu.Unlock()
		return
	}
	close(clock.expired)
	ovapipeLeasesMu.Unlock()

	nfcLease.Delete(ref) // its URLs answer 404 from now on
	message := fmt.Sprintf("The lease timed out: no progress was reported for %gs", ovapipeLeaseTimeoutSeconds)
	Map.WithLock(clock.lease, func() {
		clock.lease.State = types.HttpNfcLeaseStateError
		clock.lease.Error = &types.LocalizedMethodFault{Fault: &types.Timedout{}, LocalizedMessage: message}
	})
	log.Printf("lease %s: timed out after %gs without progress", id, ovapipeLeaseTimeoutSeconds)
}

// ovapipeLeaseCall keeps a lease's clock for a call on it: progress restarts the clock,
// complete and abort stop it; on a lease that timed out, progress, complete and
// GetManifest get the lease's error and abort InvalidState. Returns the fault to answer
// instead of dispatching, or nil.
func ovapipeLeaseCall(method string, body []byte) *soap.Fault {
	switch method {
	case "HttpNfcLeaseProgress", "HttpNfcLeaseComplete", "HttpNfcLeaseAbort", "HttpNfcLeaseGetManifest":
	default:
		return nil
	}
	m := ovapipeThisRE.FindSubmatch(body)
	if m == nil {
		return nil
	}
	id := strings.TrimSpace(string(m[1]))
	ovapipeLeasesMu.Lock()
	defer ovapipeLeasesMu.Unlock()
	clock, ok := ovapipeLeases[id]
	if !ok {
		return nil
	}
	select {
	case <-clock.expired:
		if method == "HttpNfcLeaseAbort" {
			return Fault("the lease already ended: it timed out", &types.InvalidState{})
		}
		return Fault(clock.lease.Error.LocalizedMessage, &types.Timedout{})
	default:
	}
	switch method {
	case "HttpNfcLeaseComplete", "HttpNfcLeaseAbort":
		clock.timer.Stop()
		delete(ovapipeLeases, id)
	case "HttpNfcLeaseProgress":
		clock.last = time.Now()
	}
	return nil
}

// ovapipeLeaseExpired is closed once the lease named in an NFC URL path timed out (nil for a
// lease without a clock).
func ovapipeLeaseExpired(urlPath string) <-chan struct{} {
	p := strings.Split(urlPath, "/")
	if len(p) < 2 {
		return nil
	}
	ovapipeLeasesMu.Lock()
	defer ovapipeLeasesMu.Unlock()
	if clock, ok := ovapipeLeases[p[len(p)-2]]; ok {
		return clock.expired
	}
	return nil
}

// ovapipeLeaseReader stops a transfer once its lease timed out.
type ovapipeLeaseReader struct {
	body    interface{ Read([]byte) (int, error) }
	expired <-chan struct{}
}

func (r *ovapipeLeaseReader) Read(p []byte) (int, error) {
	select {
	case <-r.expired:
		return 0, errOvapipeLeaseTimedOut
	default:
	}
	return r.body.Read(p)
}

// ovapipeBufferedWriter holds a response until the leases it made are watched, so no client
// reads a lease's info before its leaseTimeout is set.
type ovapipeBufferedWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *ovapipeBufferedWriter) Header() http.Header         { return w.header }
func (w *ovapipeBufferedWriter) WriteHeader(status int)      { w.status = status }
func (w *ovapipeBufferedWriter) Write(b []byte) (int, error) { return w.body.Write(b) }

func (w *ovapipeBufferedWriter) flushTo(out http.ResponseWriter) {
	for k, v := range w.header {
		out.Header()[k] = v
	}
	out.WriteHeader(w.status)
	_, _ = out.Write(w.body.Bytes())
}
