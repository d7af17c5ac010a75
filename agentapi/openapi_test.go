package agentapi_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/karman-project/karman/agentapi"
)

// validate loads an OpenAPI document and validates it with kin-openapi,
// which checks it against the rules of the version it declares (3.0, or
// 3.1 with JSON Schema 2020-12): schemas, references, parameters,
// responses, security schemes.
func validate(b []byte) (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(b)
	if err != nil {
		return nil, err
	}
	return doc, doc.Validate(context.Background())
}

// TestOpenAPIDocumentIsValid lints the API document (agentapi/openapi.json,
// docs/agent-openapi.json) with a real OpenAPI validator.
func TestOpenAPIDocumentIsValid(t *testing.T) {
	doc, err := validate(agentapi.OpenAPI)
	if err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI document: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi.json says OpenAPI %q; it is written to 3.1.0", doc.OpenAPI)
	}
	if doc.Components.SecuritySchemes["mutualTLS"] == nil || doc.Components.SecuritySchemes["bearer"] == nil {
		t.Errorf("security schemes %v; want bearer and mutualTLS", doc.Components.SecuritySchemes)
	}
	// The validator has teeth: the mutualTLS scheme is OpenAPI 3.1's, so
	// the same document declared 3.0.3 (as it once was) is refused.
	as30 := bytes.Replace(agentapi.OpenAPI, []byte(`"openapi": "3.1.0"`), []byte(`"openapi": "3.0.3"`), 1)
	if _, err := validate(as30); err == nil || !strings.Contains(err.Error(), "mutualTLS") {
		t.Errorf("the document declared 3.0.3: %v; want the mutualTLS scheme refused", err)
	}
}
