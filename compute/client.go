package compute

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashgrid/hashgrid"
)

// maxReplyBytes bounds a reply the client reads (an order's outputs are the largest).
const maxReplyBytes = 512 << 20

// Client calls the compute API of a market, for providers' agents and tenants.
type Client struct {
	Base string // the market's API, http://HOST:PORT
	Key  string // the account's market API key
	HTTP *http.Client
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("compute: %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.Base, "/")+path, body)
	if err != nil {
		return fmt.Errorf("compute: %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Key)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("compute: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes))
	if err != nil {
		return fmt.Errorf("compute: %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		if e, ok := hashgrid.ParseErrorReply(b); ok {
			return fmt.Errorf("compute: %s %s: %w", method, path, e)
		}
		return fmt.Errorf("compute: %s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("compute: %s %s: reply: %w", method, path, err)
		}
	}
	return nil
}

// Register sends the provider's offer.
func (c *Client) Register(ctx context.Context, req ProviderRequest) (ProviderView, error) {
	var v ProviderView
	return v, c.do(ctx, http.MethodPost, "/api/v1/compute/providers", req, &v)
}

// Provider returns the provider's leases and earnings.
func (c *Client) Provider(ctx context.Context, id string) (ProviderView, error) {
	var v ProviderView
	return v, c.do(ctx, http.MethodGet, "/api/v1/compute/providers/"+url.PathEscape(id), nil, &v)
}

// Work long-polls for leases assigned to the provider.
func (c *Client) Work(ctx context.Context, id string, wait time.Duration) ([]LeaseWork, error) {
	var v []LeaseWork
	return v, c.do(ctx, http.MethodGet, "/api/v1/compute/providers/"+url.PathEscape(id)+"/work?wait_ms="+strconv.FormatInt(wait.Milliseconds(), 10), nil, &v)
}

// Report sends a lease's usage.
func (c *Client) Report(ctx context.Context, lease string, rep UsageReport) (ReportReply, error) {
	var v ReportReply
	return v, c.do(ctx, http.MethodPost, "/api/v1/compute/leases/"+url.PathEscape(lease)+"/usage", rep, &v)
}

// Result sends one unit's outputs.
func (c *Client) Result(ctx context.Context, lease string, r UnitResult) error {
	return c.do(ctx, http.MethodPost, "/api/v1/compute/leases/"+url.PathEscape(lease)+"/results", r, nil)
}

// Offers lists the providers' offers.
func (c *Client) Offers(ctx context.Context) ([]Offer, error) {
	var v []Offer
	return v, c.do(ctx, http.MethodGet, "/api/v1/compute/offers", nil, &v)
}

// PlaceOrder submits a job.
func (c *Client) PlaceOrder(ctx context.Context, req OrderRequest) (OrderView, error) {
	var v OrderView
	return v, c.do(ctx, http.MethodPost, "/api/v1/compute/orders", req, &v)
}

// Order returns an order's state.
func (c *Client) Order(ctx context.Context, id string) (OrderView, error) {
	var v OrderView
	return v, c.do(ctx, http.MethodGet, "/api/v1/compute/orders/"+url.PathEscape(id), nil, &v)
}

// OrderOffers lists the offers that fit an order.
func (c *Client) OrderOffers(ctx context.Context, id string) ([]Offer, error) {
	var v []Offer
	return v, c.do(ctx, http.MethodGet, "/api/v1/compute/orders/"+url.PathEscape(id)+"/offers", nil, &v)
}

// Accept leases an order to a provider ("" for the cheapest that fits).
func (c *Client) Accept(ctx context.Context, id, provider string) (OrderView, error) {
	var v OrderView
	return v, c.do(ctx, http.MethodPost, "/api/v1/compute/orders/"+url.PathEscape(id)+"/accept", AcceptRequest{Provider: provider}, &v)
}

// Cancel ends an order.
func (c *Client) Cancel(ctx context.Context, id string) (OrderView, error) {
	var v OrderView
	return v, c.do(ctx, http.MethodPost, "/api/v1/compute/orders/"+url.PathEscape(id)+"/cancel", nil, &v)
}

// Outputs returns an order's outputs.
func (c *Client) Outputs(ctx context.Context, id string) ([]UnitOutput, error) {
	var v []UnitOutput
	return v, c.do(ctx, http.MethodGet, "/api/v1/compute/orders/"+url.PathEscape(id)+"/outputs", nil, &v)
}

// Log returns an order's event log.
func (c *Client) Log(ctx context.Context, id string) ([]string, error) {
	var v []string
	return v, c.do(ctx, http.MethodGet, "/api/v1/compute/orders/"+url.PathEscape(id)+"/log", nil, &v)
}

// Request sends body to a service order and waits up to wait (at most
// compute.MaxWait) for its answer: the view's Status is "done" (Response is the
// answer) or "failed" (Err says why), or, when the wait ran out, "queued" or
// "delivered" (ask again with RequestStatus).
func (c *Client) Request(ctx context.Context, order string, body []byte, wait time.Duration) (RequestView, error) {
	var v RequestView
	return v, c.do(ctx, http.MethodPost, "/api/v1/compute/orders/"+url.PathEscape(order)+"/requests?wait_ms="+strconv.FormatInt(wait.Milliseconds(), 10),
		ServiceRequest{Body: body}, &v)
}

// RequestStatus returns a request to a service order, waiting up to wait for its
// answer.
func (c *Client) RequestStatus(ctx context.Context, order, request string, wait time.Duration) (RequestView, error) {
	var v RequestView
	return v, c.do(ctx, http.MethodGet, "/api/v1/compute/orders/"+url.PathEscape(order)+"/requests/"+url.PathEscape(request)+
		"?wait_ms="+strconv.FormatInt(wait.Milliseconds(), 10), nil, &v)
}

// ServiceRequests long-polls for the requests waiting for a service lease.
func (c *Client) ServiceRequests(ctx context.Context, lease string, wait time.Duration) ([]ServiceWork, error) {
	var v []ServiceWork
	return v, c.do(ctx, http.MethodGet, "/api/v1/compute/leases/"+url.PathEscape(lease)+"/requests?wait_ms="+strconv.FormatInt(wait.Milliseconds(), 10), nil, &v)
}

// ServiceRespond sends a service's answer to one request.
func (c *Client) ServiceRespond(ctx context.Context, lease string, r ServiceResponse) error {
	return c.do(ctx, http.MethodPost, "/api/v1/compute/leases/"+url.PathEscape(lease)+"/responses", r, nil)
}
