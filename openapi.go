package hashgrid

import (
	_ "embed"
	"net/http"
)

// openAPI is the OpenAPI 3 document of every HTTP route of the pool and the market:
// docs/openapi.json, embedded so that the binary serves the document it was built
// with. api/openapi_test.go writes it from the route table and the reply types and
// fails when a registered route is missing from it or a documented one is not served.
//
//go:embed docs/openapi.json
var openAPI []byte

// OpenAPIPath is where the pool and the market serve the document.
const OpenAPIPath = "/api/v1/openapi.json"

// OpenAPI returns a copy of the embedded OpenAPI document.
func OpenAPI() []byte { return append([]byte(nil), openAPI...) }

// ServeOpenAPI answers GET /api/v1/openapi.json with the embedded document.
func ServeOpenAPI(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("X-Content-Type-Options", "nosniff")
	w.Write(openAPI)
}
