package compute

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hashgrid/hashgrid"
)

// A service is an order of kind "service": a module started once by its provider and
// kept running (compute/sandbox's serve mode), to which the tenant sends requests
// through the market. It is leased, metered and paid exactly as a job is, and runs
// until the tenant cancels it, its budget runs out (it is stopped within one
// interval, as a job is) or its provider is lost; it has no units, no outputs and no
// spot checks (a service's answers depend on what it is asked, so nothing re-runs
// them).
//
// Requests: the tenant posts one (POST /orders/{id}/requests) and waits up to
// MaxWait for its response; the market queues it for the service (at most
// MaxQueuedRequests waiting or being answered; more are refused with 429), the
// provider's agent long-polls the lease's requests (GET /leases/{id}/requests), runs
// each through the service and posts its response (POST /leases/{id}/responses). A
// request not answered within RequestTimeout fails; so does every request waiting
// when the service stops, and any request sent after.

// Order kinds.
const (
	KindJob     = "job"
	KindService = "service"
)

// Limits of services.
const (
	MaxRequestBytes   = 1 << 20          // one request's body
	MaxResponseBytes  = 1 << 20          // one response's body
	MaxQueuedRequests = 64               // requests of one service waiting or being answered
	MaxKeptRequests   = 256              // answered requests of one service kept for GET
	MaxKeptBytes      = 16 << 20         // and the bytes of their responses kept
	MaxRequestBatch   = 16               // requests handed to the provider in one poll
	RequestTimeout    = 60 * time.Second // a request not answered by then fails
	// MaxServiceRestarts is how many times a provider's agent starts a service again
	// after it crashed (exited, trapped or broke the framing); one more crash ends
	// the lease (LeaseEnded) and the order fails.
	MaxServiceRestarts = 3
)

// Service states (ServiceView.State).
const (
	ServiceWaiting  = "waiting"  // no lease yet
	ServiceStarting = "starting" // leased, not yet fetched by the provider
	ServiceRunning  = "running"
	ServiceStopped  = "stopped"
)

// LeaseEnded is a service's lease that ended by itself: its service crashed more
// than MaxServiceRestarts times, or exited.
const LeaseEnded = "ended"

// Request statuses (RequestView.Status).
const (
	RequestQueued    = "queued"    // waiting for the provider to fetch it
	RequestDelivered = "delivered" // fetched by the provider, not answered yet
	RequestDone      = "done"
	RequestFailed    = "failed"
)

// ServiceRequest is POST /api/v1/compute/orders/{id}/requests: one request to the
// order's service.
type ServiceRequest struct {
	Body []byte `json:"body"` // at most MaxRequestBytes, base64 in JSON
}

// RequestView is a request to a service as its tenant sees it.
type RequestView struct {
	ID       string    `json:"id"`
	Order    string    `json:"order"`
	Status   string    `json:"status"`
	Response []byte    `json:"response,omitempty"` // the service's answer, base64 in JSON
	Err      string    `json:"error,omitempty"`    // why it failed
	Created  time.Time `json:"created"`
	// LatencyMS is from the market receiving the request to it receiving the answer.
	LatencyMS int64 `json:"latency_ms,omitempty"`
}

// ServiceWork is one request as the provider's agent fetches it.
type ServiceWork struct {
	ID   string `json:"id"`
	Body []byte `json:"body"`
}

// ServiceResponse is POST /api/v1/compute/leases/{id}/responses: the service's
// answer to one request, or why it has none (Err: the service crashed on it).
type ServiceResponse struct {
	Request  string `json:"request"`
	Response []byte `json:"response,omitempty"`
	Err      string `json:"error,omitempty"`
}

// ServiceView is a service's state in its order's and lease's views.
type ServiceView struct {
	State    string `json:"state"`
	Reason   string `json:"reason,omitempty"` // why it stopped
	Served   int64  `json:"served"`           // requests answered
	Failed   int64  `json:"failed"`           // requests failed: crashed on, timed out, or stopped with the service
	Queued   int    `json:"queued"`           // waiting or being answered now
	Restarts int    `json:"restarts"`         // times the provider started it again after a crash
}

type service struct {
	queue    []*svcRequest // not yet fetched, oldest first
	inflight map[string]*svcRequest
	reqs     map[string]*svcRequest // every request kept, by id
	answered []string               // ids of answered requests kept, oldest first
	kept     int                    // bytes of their responses
	served   int64
	failed   int64
	restarts int
	stopped  string // why, once stopped
	wake     chan struct{}
	polls    int
}

type svcRequest struct {
	id       string
	body     []byte
	status   string
	resp     []byte
	err      string
	created  time.Time
	answered time.Time
	done     chan struct{}
}

func newService() *service {
	return &service{inflight: map[string]*svcRequest{}, reqs: map[string]*svcRequest{}, wake: make(chan struct{})}
}

func (s *service) wakeLocked() {
	close(s.wake)
	s.wake = make(chan struct{})
}

// validService checks a service order: a module, no units.
func validService(r OrderRequest) error {
	if len(r.Units) > 0 {
		return hashgrid.Errorf(hashgrid.EINVALID, "a service has no units (send it requests once it runs)")
	}
	if r.NoVerify {
		return hashgrid.Errorf(hashgrid.EINVALID, "no_verify is for jobs: a service is never spot-checked")
	}
	return nil
}

func (b *Book) serviceViewLocked(o *order) *ServiceView {
	s := o.svc
	v := &ServiceView{State: ServiceWaiting, Reason: s.stopped, Served: s.served, Failed: s.failed,
		Queued: len(s.queue) + len(s.inflight), Restarts: s.restarts}
	switch {
	case s.stopped != "":
		v.State = ServiceStopped
	case o.main == nil:
		if o.status != OrderOpen {
			v.State = ServiceStopped
		}
	case o.main.status == LeasePending:
		v.State = ServiceStarting
	case o.main.status == LeaseRunning:
		v.State = ServiceRunning
	default:
		v.State = ServiceStopped
	}
	return v
}

// stopServiceLocked fails every request of o's service still waiting, and every one
// sent from now on, with reason.
func (b *Book) stopServiceLocked(o *order, reason string) {
	s := o.svc
	if s == nil || s.stopped != "" {
		return
	}
	s.stopped = reason
	now := b.cfg.Now()
	for _, r := range s.queue {
		b.finishLocked(s, r, nil, "service stopped: "+reason, now)
	}
	for _, r := range s.inflight {
		b.finishLocked(s, r, nil, "service stopped: "+reason, now)
	}
	s.queue = nil
	clear(s.inflight)
	s.wakeLocked()
	o.logf(now, "service stopped: %s (%d requests served, %d failed)", reason, s.served, s.failed)
}

// finishLocked records a request's answer (err empty) or failure, and keeps it for
// GET among the last MaxKeptRequests answered (and MaxKeptBytes of responses).
func (b *Book) finishLocked(s *service, r *svcRequest, resp []byte, err string, now time.Time) {
	r.resp, r.err, r.answered = resp, err, now
	r.body = nil // delivered or never to be: only the answer is kept
	if err != "" {
		r.status = RequestFailed
		s.failed++
	} else {
		r.status = RequestDone
		s.served++
	}
	close(r.done)
	s.answered = append(s.answered, r.id)
	s.kept += len(resp)
	for len(s.answered) > MaxKeptRequests || s.kept > MaxKeptBytes {
		old := s.reqs[s.answered[0]]
		s.kept -= len(old.resp)
		delete(s.reqs, old.id)
		s.answered = slices.Delete(s.answered, 0, 1)
	}
}

// expireRequestsLocked fails o's requests older than RequestTimeout.
func (b *Book) expireRequestsLocked(o *order, now time.Time) {
	s := o.svc
	if s == nil {
		return
	}
	why := fmt.Sprintf("not answered within %v", RequestTimeout)
	s.queue = slices.DeleteFunc(s.queue, func(r *svcRequest) bool {
		if now.Sub(r.created) <= RequestTimeout {
			return false
		}
		b.finishLocked(s, r, nil, why, now)
		return true
	})
	for id, r := range s.inflight {
		if now.Sub(r.created) > RequestTimeout {
			delete(s.inflight, id)
			b.finishLocked(s, r, nil, why, now)
		}
	}
}

func requestView(o *order, r *svcRequest) RequestView {
	v := RequestView{ID: r.id, Order: o.id, Status: r.status, Response: r.resp, Err: r.err, Created: r.created}
	if !r.answered.IsZero() {
		v.LatencyMS = r.answered.Sub(r.created).Milliseconds()
	}
	return v
}

// ownService returns account's service order id.
func (b *Book) ownService(account, id string) (*order, error) {
	o, err := b.ownOrder(account, id)
	if err != nil {
		return nil, err
	}
	if o.svc == nil {
		return nil, hashgrid.Errorf(hashgrid.EINVALID, "order %s is a job, not a service", id)
	}
	return o, nil
}

// Request sends body to the service of account's order id and waits up to wait (at
// most MaxWait) for its answer. The view's Status says whether it came: done or
// failed, or still queued or delivered (ask again with RequestStatus). A service
// not leased yet, or stopped, or with MaxQueuedRequests waiting, refuses it.
func (b *Book) Request(ctx context.Context, account, id string, body []byte, wait time.Duration) (RequestView, error) {
	if len(body) > MaxRequestBytes {
		return RequestView{}, hashgrid.Errorf(hashgrid.EINVALID, "request of %d bytes over %d", len(body), MaxRequestBytes)
	}
	b.mu.Lock()
	o, err := b.ownService(account, id)
	if err != nil {
		b.mu.Unlock()
		return RequestView{}, err
	}
	s := o.svc
	switch {
	case s.stopped != "":
		err = hashgrid.Errorf(hashgrid.ECONFLICT, "service of order %s is stopped: %s", id, s.stopped)
	case o.status != OrderRunning:
		err = hashgrid.Errorf(hashgrid.ECONFLICT, "service of order %s is not running (order %s)", id, o.status)
	case len(s.queue)+len(s.inflight) >= MaxQueuedRequests:
		err = hashgrid.Errorf(hashgrid.ERATELIMITED, "service of order %s has %d requests waiting, the most it may: retry when they are answered", id, MaxQueuedRequests)
	}
	if err != nil {
		b.mu.Unlock()
		return RequestView{}, err
	}
	r := &svcRequest{id: newID("r"), body: body, status: RequestQueued, created: b.cfg.Now(), done: make(chan struct{})}
	s.queue = append(s.queue, r)
	s.reqs[r.id] = r
	s.wakeLocked()
	b.mu.Unlock()
	return b.awaitRequest(ctx, o, r, wait), nil
}

// RequestStatus returns request rid of account's service order id, waiting up to
// wait (at most MaxWait) for its answer.
func (b *Book) RequestStatus(ctx context.Context, account, id, rid string, wait time.Duration) (RequestView, error) {
	b.mu.Lock()
	o, err := b.ownService(account, id)
	var r *svcRequest
	if err == nil {
		if r = o.svc.reqs[rid]; r == nil {
			err = hashgrid.Errorf(hashgrid.ENOTFOUND, "no request %q of order %s (the last %d answered are kept)", rid, id, MaxKeptRequests)
		}
	}
	b.mu.Unlock()
	if err != nil {
		return RequestView{}, err
	}
	return b.awaitRequest(ctx, o, r, wait), nil
}

func (b *Book) awaitRequest(ctx context.Context, o *order, r *svcRequest, wait time.Duration) RequestView {
	wait = min(max(wait, 0), MaxWait)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-r.done:
	case <-t.C:
	case <-ctx.Done():
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return requestView(o, r)
}

// ServiceRequests hands the requests waiting for account's service lease id to its
// provider (at most MaxRequestBatch), waiting up to wait (at most MaxWait) for one.
// A lease that is over answers a conflict: the agent stops its service.
func (b *Book) ServiceRequests(ctx context.Context, account, id string, wait time.Duration) ([]ServiceWork, error) {
	wait = min(max(wait, 0), MaxWait)
	b.mu.Lock()
	l, err := b.ownLease(account, id)
	if err == nil && l.kind != KindService {
		err = hashgrid.Errorf(hashgrid.EINVALID, "lease %s is not a service", id)
	}
	if err == nil && l.o.svc.polls >= MaxPolls {
		err = hashgrid.Errorf(hashgrid.ERATELIMITED, "%d polls of lease %s already waiting", MaxPolls, id)
	}
	if err != nil {
		b.mu.Unlock()
		return nil, err
	}
	s := l.o.svc
	s.polls++
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		s.polls--
		b.mu.Unlock()
	}()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		b.mu.Lock()
		l.p.seen = b.cfg.Now()
		if terminal(l.status) {
			st, why := l.status, l.reason
			b.mu.Unlock()
			return nil, hashgrid.Errorf(hashgrid.ECONFLICT, "lease %s is %s: %s", id, st, why)
		}
		var out []ServiceWork
		// A lease not fetched yet gets nothing: it has no service running.
		for l.status == LeaseRunning && len(s.queue) > 0 && len(out) < MaxRequestBatch {
			r := s.queue[0]
			s.queue = s.queue[1:]
			r.status = RequestDelivered
			s.inflight[r.id] = r
			out = append(out, ServiceWork{ID: r.id, Body: r.body})
		}
		wake := s.wake
		b.mu.Unlock()
		if len(out) > 0 {
			return out, nil
		}
		select {
		case <-wake:
		case <-timer.C:
			return []ServiceWork{}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// ServiceRespond records the service's answer to one request of account's lease id.
func (b *Book) ServiceRespond(account, id string, resp ServiceResponse) error {
	if len(resp.Response) > MaxResponseBytes {
		return hashgrid.Errorf(hashgrid.EINVALID, "response of %d bytes over %d", len(resp.Response), MaxResponseBytes)
	}
	if len(resp.Err) > 1024 {
		resp.Err = resp.Err[:1024]
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	l, err := b.ownLease(account, id)
	if err != nil {
		return err
	}
	if l.kind != KindService {
		return hashgrid.Errorf(hashgrid.EINVALID, "lease %s is not a service", id)
	}
	s := l.o.svc
	r := s.inflight[resp.Request]
	if r == nil {
		return hashgrid.Errorf(hashgrid.ENOTFOUND, "lease %s has no request %q waiting (timed out, or the service stopped)", id, resp.Request)
	}
	delete(s.inflight, r.id)
	errText := ""
	if resp.Err != "" {
		errText = "service failed on it: " + resp.Err
		resp.Response = nil
	}
	b.finishLocked(s, r, resp.Response, errText, b.cfg.Now())
	return nil
}

// serviceReportLocked takes what a usage report says of a service: its restarts so
// far and, in a final report, that it ended by itself.
func (b *Book) serviceReportLocked(l *lease, rep UsageReport, now time.Time) {
	s := l.o.svc
	if rep.Restarts > s.restarts {
		l.o.logf(now, "service restarted by provider %s after a crash (%d so far): %s", l.p.id, rep.Restarts, rep.Reason)
		s.restarts = rep.Restarts
	}
}

// serviceEndedLocked ends a service lease whose provider says, in a final report,
// that the service ended by itself.
func (b *Book) serviceEndedLocked(l *lease, reason string) {
	if reason == "" {
		reason = "the service ended"
	}
	b.endLocked(l, LeaseEnded, reason)
	if l == l.o.main && l.o.status == OrderRunning {
		l.o.status, l.o.reason = OrderFailed, reason
	}
}

// kindOf is an order's kind, "job" when the request left it out.
func kindOf(r OrderRequest) string {
	if r.Kind == "" {
		return KindJob
	}
	return r.Kind
}
