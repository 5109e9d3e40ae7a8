// Package resources loads what `switchyard translate -o json` prints into go-control-plane's
// types, so the Go server serves the very messages Switchyard serves.
package resources

import (
	"encoding/json"
	"fmt"
	"os"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	// Every message type that appears in a typed_config of the translated resources must be
	// linked in, or protojson cannot resolve its "@type".
	_ "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/filters/cel/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/buffer/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/stateful_session/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/upstream_codec/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/http/stateful_session/header/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/priority/previous_priorities/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// kinds maps the keys of the translate report's "xds" object to xDS type URLs.
var kinds = map[string]resource.Type{
	"listeners": resource.ListenerType,
	"routes":    resource.RouteType,
	"clusters":  resource.ClusterType,
	"endpoints": resource.EndpointType,
	"secrets":   resource.SecretType,
}

type report struct {
	Xds map[string][]json.RawMessage `json:"xds"`
}

// Load reads a translate report (JSON) and returns its resources by type URL.
func Load(path string) (map[resource.Type][]types.Resource, int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	var r report
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, 0, fmt.Errorf("%s: not a `switchyard translate -o json` report: %w", path, err)
	}
	out := make(map[resource.Type][]types.Resource, len(kinds))
	count := 0
	for key, list := range r.Xds {
		typeURL, ok := kinds[key]
		if !ok {
			return nil, 0, fmt.Errorf("%s: xds.%s is not a known resource kind", path, key)
		}
		for i, doc := range list {
			var any anypb.Any
			if err := protojson.Unmarshal(doc, &any); err != nil {
				return nil, 0, fmt.Errorf("%s: xds.%s[%d]: %w", path, key, i, err)
			}
			msg, err := any.UnmarshalNew()
			if err != nil {
				return nil, 0, fmt.Errorf("%s: xds.%s[%d]: %w", path, key, i, err)
			}
			if any.GetTypeUrl() != typeURL {
				return nil, 0, fmt.Errorf("%s: xds.%s[%d] is a %s, expected %s", path, key, i, any.GetTypeUrl(), typeURL)
			}
			out[typeURL] = append(out[typeURL], msg.(types.Resource))
			count++
		}
	}
	return out, count, nil
}
