// Command loadclient is a fleet of fake Envoys for the bench: N ADS streams (SotW or delta),
// each subscribing as Envoy does (CDS and LDS wildcard, then EDS for the EDS clusters, RDS for
// the listeners' route configurations, SDS for the TLS secrets they name), ACKing every
// response at once. Commands on stdin, one a line; events on stdout, one JSON object a line:
//
//	mark ID TYPES   TYPES: comma-separated cds,eds,lds,rds,sds; answers "marked" (with the mark's
//	                wall-clock time, atUnixUs) once it has noted what every stream holds, then
//	                "done" once every stream has ACKed a new version of each (SotW: a version_info
//	                other than the one it had ACKed at the mark; delta: a response with changes),
//	                timed from the mark. Make the change only after "marked": a change that
//	                reaches a stream before its baseline is noted is in the baseline, and that
//	                stream then waits for another change that never comes.
//	status ID       how many streams have completed mark ID, and the stream errors so far
//	quit
//
// "ready" is printed once every stream has ACKed its whole initial configuration.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

var shortTypes = map[string]string{
	"cds": resource.ClusterType,
	"eds": resource.EndpointType,
	"lds": resource.ListenerType,
	"rds": resource.RouteType,
	"sds": resource.SecretType,
}

func emit(v map[string]any) {
	b, _ := json.Marshal(v)
	out.Lock()
	fmt.Println(string(b))
	out.Unlock()
}

var out sync.Mutex

// name prefixes every stderr line, so two fleets' lines can be told apart.
var name = "loadclient"

// verbose: every response and request on stderr (-v), to see why a wait does not end.
var verbose bool

func trace(format string, args ...any) {
	if verbose {
		fmt.Fprintf(os.Stderr, name+": "+format+"\n", args...)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// refs are the names one resource makes Envoy subscribe to.
type refs struct {
	eds []string
	rds []string
	sds []string
}

// refCache keys on the serialized resource: every stream gets the same bytes, so each
// distinct resource is decoded once for the whole fleet, not once per stream. A plain map
// under a lock: looking up m[string(bytes)] does not copy the bytes.
var (
	refMu    sync.RWMutex
	refCache = map[string]map[string]refs{}
)

func sdsNames(ctx *tlsv3.CommonTlsContext) []string {
	if ctx == nil {
		return nil
	}
	var names []string
	for _, c := range ctx.GetTlsCertificateSdsSecretConfigs() {
		names = append(names, c.GetName())
	}
	if v := ctx.GetValidationContextSdsSecretConfig(); v != nil {
		names = append(names, v.GetName())
	}
	return names
}

func refsOf(any *anypb.Any) refs {
	refMu.RLock()
	r, ok := refCache[any.GetTypeUrl()][string(any.GetValue())]
	refMu.RUnlock()
	if ok {
		return r
	}
	switch any.GetTypeUrl() {
	case resource.ClusterType:
		var c clusterv3.Cluster
		if proto.Unmarshal(any.GetValue(), &c) == nil {
			if c.GetType() == clusterv3.Cluster_EDS {
				name := c.GetEdsClusterConfig().GetServiceName()
				if name == "" {
					name = c.GetName()
				}
				r.eds = append(r.eds, name)
			}
			if ts := c.GetTransportSocket(); ts != nil && ts.GetTypedConfig() != nil {
				var up tlsv3.UpstreamTlsContext
				if ts.GetTypedConfig().UnmarshalTo(&up) == nil {
					r.sds = append(r.sds, sdsNames(up.GetCommonTlsContext())...)
				}
			}
		}
	case resource.ListenerType:
		var l listenerv3.Listener
		if proto.Unmarshal(any.GetValue(), &l) == nil {
			for _, fc := range l.GetFilterChains() {
				for _, f := range fc.GetFilters() {
					var hcm hcmv3.HttpConnectionManager
					if f.GetTypedConfig() != nil && f.GetTypedConfig().UnmarshalTo(&hcm) == nil && hcm.GetRds() != nil {
						r.rds = append(r.rds, hcm.GetRds().GetRouteConfigName())
					}
				}
				if ts := fc.GetTransportSocket(); ts != nil && ts.GetTypedConfig() != nil {
					var down tlsv3.DownstreamTlsContext
					if ts.GetTypedConfig().UnmarshalTo(&down) == nil {
						r.sds = append(r.sds, sdsNames(down.GetCommonTlsContext())...)
					}
				}
			}
		}
	}
	refMu.Lock()
	byType := refCache[any.GetTypeUrl()]
	if byType == nil {
		byType = map[string]refs{}
		refCache[any.GetTypeUrl()] = byType
	}
	byType[string(any.GetValue())] = r
	refMu.Unlock()
	return r
}

// typeState is one stream's view of one resource type.
type typeState struct {
	subscribed bool
	names      []string // sorted, for EDS/RDS/SDS
	version    string   // SotW: last ACKed version_info
	nonce      string
	changes    int64 // ACKed responses that carried resources or removals
	// SotW: the last response's resources; delta: the first response's, until a later one
	// changes what the stream holds: from then on what each resource held refers to, by name.
	held   *decodedResources
	byName map[string]*refs
	// What the resources held refer to (delta: kept up to date as resources come and go).
	union refs
}

// count is how many resources the stream holds of the type.
func (t *typeState) count() int {
	if t.byName != nil {
		return len(t.byName)
	}
	if t.held != nil {
		return t.held.count
	}
	return 0
}

type stream struct {
	id          int
	mu          sync.Mutex
	types       map[string]*typeState
	connectedAt time.Time
	// The first HTTP/2 DATA frame on this stream's own connection: the first byte of its first
	// response, before the whole message (megabytes) has arrived; nil with -conns.
	firstData *dataWatch
	firstAt   time.Time
	readyAt   time.Time
	// Per mark: when this stream first received, and completed, the marked change.
	markFirst time.Time
	markDone  time.Time
	errors    int
}

type mark struct {
	id       string
	types    []string
	at       time.Time
	baseline map[int]map[string]typeState
	done     int
	first    time.Time
	doneAt   []time.Duration
}

type fleet struct {
	delta    bool
	node     func(int) *corev3.Node
	start    time.Time
	streams  []*stream
	events   chan int // a stream id that ACKed something
	mu       sync.Mutex
	current  *mark
	ready    int
	reported bool
	finished map[string]bool
}

func (f *fleet) onAck(s *stream) {
	select {
	case f.events <- s.id:
	default:
		// The coordinator is behind; it rescans every stream on its next tick.
	}
}

func sortedKeys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// wanted derives the EDS/RDS/SDS names a stream must subscribe to from its CDS and LDS resources.
func wanted(types map[string]*typeState) map[string][]string {
	u := unionOf(&types[resource.ClusterType].union, &types[resource.ListenerType].union)
	return map[string][]string{resource.EndpointType: u.eds, resource.RouteType: u.rds, resource.SecretType: u.sds}
}

// unionOf is the sorted union of two sets of references; a list only one of them has is shared
// as it is (the thousand assignment names of a fleet's Clusters are sorted once for every stream).
func unionOf(a, b *refs) refs {
	pick := func(x, y []string) []string {
		if len(y) == 0 {
			return x
		}
		if len(x) == 0 {
			return y
		}
		set := map[string]bool{}
		for _, n := range x {
			set[n] = true
		}
		for _, n := range y {
			set[n] = true
		}
		return sortedKeys(set)
	}
	return refs{eds: pick(a.eds, b.eds), rds: pick(a.rds, b.rds), sds: pick(a.sds, b.sds)}
}

func sameRefs(a, b *refs) bool {
	return equal(a.eds, b.eds) && equal(a.rds, b.rds) && equal(a.sds, b.sds)
}

// applyDelta updates a delta stream's resources of one type; the caller holds s.mu.
func (t *typeState) applyDelta(resp *rawResponse) {
	if t.byName == nil && t.held == nil && len(resp.removed) == 0 {
		// The stream held none: it now holds exactly the response's resources, as read (for
		// Clusters and Listeners, the fleet's one copy), with no map of its own until a later
		// response changes them.
		t.held = resp.decoded
		t.union = resp.decoded.union
		return
	}
	if t.byName == nil {
		t.byName = map[string]*refs{}
		if t.held != nil {
			for i, name := range t.held.names {
				t.byName[name] = t.held.refAt(i)
			}
			t.held = nil
		}
	}
	moved := false
	for i, name := range resp.decoded.names {
		r := resp.decoded.refAt(i)
		if old, had := t.byName[name]; !had || !sameRefs(old, r) {
			moved = true
		}
		t.byName[name] = r
	}
	for _, name := range resp.removed {
		if _, had := t.byName[name]; had {
			moved = true
			delete(t.byName, name)
		}
	}
	switch {
	case !moved:
	case len(t.byName) == resp.decoded.count:
		// The response holds every resource the stream has (names are unique in a response).
		t.union = resp.decoded.union
	default:
		sets := make([]*refs, 0, len(t.byName))
		for _, r := range t.byName {
			sets = append(sets, r)
		}
		t.union = mergeRefs(sets)
	}
}

func (s *stream) readyNow() bool {
	for _, t := range s.types {
		if t.subscribed && t.nonce == "" && (len(t.names) > 0 || t.names == nil) {
			return false
		}
	}
	return true
}

func newTypes() map[string]*typeState {
	types := map[string]*typeState{}
	for _, t := range shortTypes {
		types[t] = &typeState{}
	}
	// Wildcard: names stay nil.
	types[resource.ClusterType].subscribed = true
	types[resource.ListenerType].subscribed = true
	return types
}

func (f *fleet) run(ctx context.Context, s *stream, conn *grpc.ClientConn) {
	for ctx.Err() == nil {
		err := f.once(ctx, s, conn)
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		s.errors++
		s.types = newTypes()
		s.mu.Unlock()
		if s.errors <= 3 || s.errors%100 == 0 {
			fmt.Fprintf(os.Stderr, "%s: stream %d: %v (reconnecting in 500 ms, as Envoy's back-off starts)\n", name, s.id, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (f *fleet) once(ctx context.Context, s *stream, conn *grpc.ClientConn) error {
	method := "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
	if f.delta {
		method = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
	}
	call, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method, grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		return err
	}
	if f.delta {
		return f.deltaStream(s, call)
	}
	return f.sotwStream(s, call)
}

// connected notes when the stream first reached the server.
func (s *stream) connected() {
	s.mu.Lock()
	if s.connectedAt.IsZero() {
		s.connectedAt = time.Now()
	}
	s.mu.Unlock()
}

// received notes a response of typeURL and returns that type's state, nil for a type the stream
// does not track; the caller holds s.mu.
func (s *stream) received(typeURL string) *typeState {
	now := time.Now()
	if s.firstAt.IsZero() {
		s.firstAt = now
	}
	t := s.types[typeURL]
	if t != nil && s.markFirst.IsZero() {
		s.markFirst = now
	}
	return t
}

// resubscribe follows a CDS or LDS response (respType) with the EDS, or RDS, and SDS
// subscriptions its resources now call for: request is called for each type whose names changed,
// with that type's state as it was, before it records the new names. The caller holds s.mu.
func (s *stream) resubscribe(respType string, request func(typeURL string, dep *typeState, names []string)) {
	if respType != resource.ClusterType && respType != resource.ListenerType {
		return
	}
	for typeURL, names := range wanted(s.types) {
		dep := s.types[typeURL]
		if (typeURL == resource.EndpointType) != (respType == resource.ClusterType) && typeURL != resource.SecretType {
			continue
		}
		if dep.subscribed && equal(dep.names, names) {
			continue
		}
		if !dep.subscribed && len(names) == 0 {
			continue
		}
		request(typeURL, dep, names)
		dep.subscribed = true
		dep.names = names
	}
}

func sendAll[R any](reqs []R, send func(R) error) error {
	for _, req := range reqs {
		if err := send(req); err != nil {
			return err
		}
	}
	return nil
}

// firstTypes are what a stream asks for when it opens; what their resources name follows.
var firstTypes = []string{resource.ClusterType, resource.ListenerType}

// openStream marks s connected and asks for firstTypes. The send it returns, for SotW and delta
// requests alike, puts the node on the stream's first request only, as Envoy does with
// set_node_on_first_message_only: the server keeps it for the stream.
func openStream[R any](s *stream, call grpc.ClientStream, node *corev3.Node, setNode func(R, *corev3.Node), request func(typeURL string) R) (func(R) error, error) {
	send := func(req R) error {
		if node != nil {
			setNode(req, node)
			node = nil
		}
		return call.SendMsg(req)
	}
	s.connected()
	for _, t := range firstTypes {
		if err := send(request(t)); err != nil {
			return nil, err
		}
	}
	return send, nil
}

func (f *fleet) sotwStream(s *stream, call grpc.ClientStream) error {
	send, err := openStream(s, call, f.node(s.id),
		func(req *discoveryv3.DiscoveryRequest, node *corev3.Node) { req.Node = node },
		func(typeURL string) *discoveryv3.DiscoveryRequest {
			return &discoveryv3.DiscoveryRequest{TypeUrl: typeURL}
		})
	if err != nil {
		return err
	}
	for {
		resp := &rawResponse{}
		if err := call.RecvMsg(resp); err != nil {
			return err
		}
		trace("stream %d: sotw %s: version %s, %d resources, nonce %s", s.id, resp.typeURL, resp.version, resp.decoded.count, resp.nonce)
		s.mu.Lock()
		t := s.received(resp.typeURL)
		if t == nil {
			s.mu.Unlock()
			continue
		}
		t.held = resp.decoded
		t.union = resp.decoded.union
		t.version = resp.version
		t.nonce = resp.nonce
		t.changes++
		reqs := []*discoveryv3.DiscoveryRequest{{TypeUrl: resp.typeURL, VersionInfo: t.version, ResponseNonce: t.nonce, ResourceNames: t.names}}
		s.resubscribe(resp.typeURL, func(typeURL string, dep *typeState, names []string) {
			reqs = append(reqs, &discoveryv3.DiscoveryRequest{TypeUrl: typeURL, VersionInfo: dep.version, ResponseNonce: dep.nonce, ResourceNames: names})
		})
		s.mu.Unlock()
		if err := sendAll(reqs, send); err != nil {
			return err
		}
		f.onAck(s)
	}
}

func (f *fleet) deltaStream(s *stream, call grpc.ClientStream) error {
	send, err := openStream(s, call, f.node(s.id),
		func(req *discoveryv3.DeltaDiscoveryRequest, node *corev3.Node) { req.Node = node },
		func(typeURL string) *discoveryv3.DeltaDiscoveryRequest {
			return &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURL}
		})
	if err != nil {
		return err
	}
	for {
		resp := &rawResponse{delta: true}
		if err := call.RecvMsg(resp); err != nil {
			return err
		}
		trace("stream %d: delta %s: %d resources, %d removed, nonce %s", s.id, resp.typeURL, resp.decoded.count, len(resp.removed), resp.nonce)
		s.mu.Lock()
		t := s.received(resp.typeURL)
		if t == nil {
			s.mu.Unlock()
			continue
		}
		t.applyDelta(resp)
		t.nonce = resp.nonce
		t.version = resp.version
		if resp.decoded.count+len(resp.removed) > 0 {
			t.changes++
		}
		reqs := []*discoveryv3.DeltaDiscoveryRequest{{TypeUrl: resp.typeURL, ResponseNonce: t.nonce}}
		s.resubscribe(resp.typeURL, func(typeURL string, dep *typeState, names []string) {
			have := map[string]bool{}
			for _, n := range dep.names {
				have[n] = true
			}
			req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURL}
			for _, n := range names {
				if !have[n] {
					req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, n)
				}
				delete(have, n)
			}
			req.ResourceNamesUnsubscribe = sortedKeys(have)
			reqs = append(reqs, req)
		})
		s.mu.Unlock()
		if err := sendAll(reqs, send); err != nil {
			return err
		}
		f.onAck(s)
	}
}

// check updates the fleet's progress for one stream; the caller holds f.mu.
func (f *fleet) check(s *stream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readyAt.IsZero() && s.readyNow() && !s.firstAt.IsZero() {
		s.readyAt = time.Now()
		f.ready++
	}
	m := f.current
	if m == nil || !s.markDone.IsZero() {
		return
	}
	base := m.baseline[s.id]
	for _, typeURL := range m.types {
		t := s.types[typeURL]
		b := base[typeURL]
		if f.delta {
			if t.changes <= b.changes {
				return
			}
		} else if t.nonce == "" || t.version == b.version {
			return
		}
	}
	s.markDone = time.Now()
	m.done++
	m.doneAt = append(m.doneAt, s.markDone.Sub(m.at))
	if m.first.IsZero() || s.markFirst.Before(m.first) {
		m.first = s.markFirst
	}
}

func (f *fleet) report() {
	if !f.reported && f.ready == len(f.streams) {
		f.reported = true
		var connectMax, firstMax, readyMax, firstByteMax time.Duration
		firstMin := time.Duration(1 << 62)
		firstBytes := true
		// Per stream: when it was ready, and how long from its first byte: streams served one
		// after another take a short while each, streams served side by side all take long.
		readies := make([]time.Duration, 0, len(f.streams))
		spans := make([]time.Duration, 0, len(f.streams))
		for _, s := range f.streams {
			s.mu.Lock()
			connectMax = max(connectMax, s.connectedAt.Sub(f.start))
			firstMax = max(firstMax, s.firstAt.Sub(f.start))
			firstMin = min(firstMin, s.firstAt.Sub(f.start))
			readyMax = max(readyMax, s.readyAt.Sub(f.start))
			readies = append(readies, s.readyAt.Sub(f.start))
			s.mu.Unlock()
			if at := s.firstData.at(); at.IsZero() {
				firstBytes = false
			} else {
				firstByteMax = max(firstByteMax, at.Sub(f.start))
				spans = append(spans, s.readyAt.Sub(at))
			}
		}
		ready := map[string]any{"event": "ready", "streams": len(f.streams), "connectMaxMs": ms(connectMax), "firstResponseMinMs": ms(firstMin), "firstResponseMaxMs": ms(firstMax), "readyMs": ms(readyMax), "readyP50Ms": ms(median(readies))}
		if firstBytes {
			ready["firstByteMaxMs"] = ms(firstByteMax)
			ready["firstByteToReadyP50Ms"] = ms(median(spans))
			ready["firstByteToReadyMaxMs"] = ms(slices.Max(spans))
		}
		emit(ready)
	}
	m := f.current
	if m != nil && m.done == len(f.streams) {
		sort.Slice(m.doneAt, func(i, j int) bool { return m.doneAt[i] < m.doneAt[j] })
		emit(map[string]any{"event": "done", "id": m.id, "ms": ms(m.doneAt[len(m.doneAt)-1]), "p50Ms": ms(m.doneAt[len(m.doneAt)/2]), "firstMs": ms(m.first.Sub(m.at)), "errors": f.errors()})
		f.finished[m.id] = true
		f.current = nil
	}
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[len(d)/2]
}

func (f *fleet) errors() int {
	n := 0
	for _, s := range f.streams {
		s.mu.Lock()
		n += s.errors
		s.mu.Unlock()
	}
	return n
}

func (f *fleet) mark(id string, short string) bool {
	m := &mark{id: id, at: time.Now(), baseline: map[int]map[string]typeState{}}
	for _, name := range strings.Split(short, ",") {
		typeURL, ok := shortTypes[name]
		if !ok {
			emit(map[string]any{"event": "error", "message": "mark: unknown type " + name + " (cds,eds,lds,rds,sds)"})
			return false
		}
		m.types = append(m.types, typeURL)
	}
	for _, s := range f.streams {
		s.mu.Lock()
		base := map[string]typeState{}
		for _, typeURL := range m.types {
			base[typeURL] = typeState{version: s.types[typeURL].version, changes: s.types[typeURL].changes}
		}
		m.baseline[s.id] = base
		s.markFirst = time.Time{}
		s.markDone = time.Time{}
		s.mu.Unlock()
	}
	f.current = m
	return true
}

func main() {
	addr := flag.String("addr", "127.0.0.1:18000", "xDS server address")
	n := flag.Int("n", 10, "ADS streams")
	conns := flag.Int("conns", 0, "HTTP/2 connections shared by the streams (0: one per stream, as a fleet of Envoys)")
	mode := flag.String("mode", "sotw", "sotw or delta")
	gateway := flag.String("gateway", "", "node.metadata[switchyard.dev/gateway]: the Gateway every stream serves")
	window := flag.Int("window", 0, "HTTP/2 receive window of each stream and connection in bytes, fixed (0: gRPC's default, 64 KiB growing with its bandwidth estimate); Envoy's default is 268435456 (256 MiB)")
	readBuffer := flag.Int("readbuffer", 128*1024, "bytes read from a connection at once (Envoy reserves 8 slices of 16 KiB per read; gRPC-Go reads 32 KiB by default): each read frees receive window, and the ACK that says so makes the kernel send more")
	cpuProfile := flag.String("cpuprofile", "", "write this process's CPU profile (pprof) to the file, until quit")
	flag.BoolVar(&verbose, "v", false, "trace every response on stderr")
	flag.StringVar(&name, "name", name, "prefix of this fleet's lines on stderr")
	flag.Parse()
	if *mode != "sotw" && *mode != "delta" {
		fmt.Fprintln(os.Stderr, "loadclient: -mode is sotw or delta")
		os.Exit(2)
	}
	if *cpuProfile != "" {
		file, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(file)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "loadclient: -cpuprofile: %v\n", err)
			os.Exit(2)
		}
		defer pprof.StopCPUProfile()
	}
	f := &fleet{delta: *mode == "delta", start: time.Now(), events: make(chan int, 1<<16), finished: map[string]bool{}}
	f.node = func(i int) *corev3.Node {
		node := &corev3.Node{Id: fmt.Sprintf("bench-envoy-%d", i), Cluster: "bench"}
		if *gateway != "" {
			node.Metadata = &structpb.Struct{Fields: map[string]*structpb.Value{"switchyard.dev/gateway": structpb.NewStringValue(*gateway)}}
		}
		return node
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	shared := make([]*grpc.ClientConn, *conns)
	pool := &framePool{}
	dial := func(watch *dataWatch) *grpc.ClientConn {
		options := []grpc.DialOption{
			grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1 << 30)),
			experimental.WithBufferPool(pool),
		}
		if watch != nil {
			options = append(options, grpc.WithContextDialer(watch.dial))
		}
		if *readBuffer > 0 {
			options = append(options, grpc.WithReadBufferSize(*readBuffer))
		}
		if *window > 0 {
			// As Envoy's initial_stream_window_size and initial_connection_window_size: a server
			// may send that much to a stream before the client reads any of it.
			options = append(options, grpc.WithInitialWindowSize(int32(*window)), grpc.WithInitialConnWindowSize(int32(*window)))
		}
		conn, err := grpc.NewClient(*addr, options...)
		if err != nil {
			fmt.Fprintf(os.Stderr, "loadclient: %v\n", err)
			os.Exit(1)
		}
		return conn
	}
	for i := range shared {
		shared[i] = dial(nil)
	}
	for i := 0; i < *n; i++ {
		s := &stream{id: i, types: newTypes()}
		f.streams = append(f.streams, s)
		var c *grpc.ClientConn
		if *conns > 0 {
			c = shared[i%*conns]
		} else {
			s.firstData = &dataWatch{}
			c = dial(s.firstData)
		}
		go f.run(ctx, s, c)
	}

	commands := make(chan []string)
	go func() {
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			commands <- strings.Fields(in.Text())
		}
		close(commands)
	}()
	var acked atomic.Int64
	tick := time.NewTicker(50 * time.Millisecond)
	progress := time.NewTicker(5 * time.Second)
	for {
		select {
		case id := <-f.events:
			acked.Add(1)
			f.mu.Lock()
			f.check(f.streams[id])
			f.report()
			f.mu.Unlock()
		case <-tick.C:
			// Catches ACKs whose event was dropped while the channel was full.
			f.mu.Lock()
			for _, s := range f.streams {
				f.check(s)
			}
			f.report()
			f.mu.Unlock()
		case <-progress.C:
			f.mu.Lock()
			done := -1
			if f.current != nil {
				done = f.current.done
			}
			if f.ready == len(f.streams) && f.current == nil {
				f.mu.Unlock()
				continue
			}
			fmt.Fprintf(os.Stderr, "%s: %d/%d streams ready, mark done %d, %d ACKs, %d stream errors\n", name, f.ready, len(f.streams), done, acked.Load(), f.errors())
			f.mu.Unlock()
		case cmd, ok := <-commands:
			if !ok || (len(cmd) > 0 && cmd[0] == "quit") {
				return
			}
			if len(cmd) == 0 {
				continue
			}
			f.mu.Lock()
			switch {
			case cmd[0] == "mark" && len(cmd) == 3:
				if !f.mark(cmd[1], cmd[2]) {
					break
				}
				// Before "done" can be: the bench makes its change once it reads this.
				emit(map[string]any{"event": "marked", "id": cmd[1], "atUnixUs": f.current.at.UnixMicro()})
				for _, s := range f.streams {
					f.check(s)
				}
				f.report()
			case cmd[0] == "status" && len(cmd) == 2:
				done := 0
				if f.current != nil && f.current.id == cmd[1] {
					done = f.current.done
				} else if f.finished[cmd[1]] {
					done = len(f.streams)
				}
				// A wait that times out says which streams lack the change and what they hold of
				// the marked types, so that a server that does not deliver can be told from a
				// client that does not notice.
				var missing []map[string]any
				if m := f.current; m != nil && m.id == cmd[1] {
					for _, s := range f.streams {
						s.mu.Lock()
						if s.markDone.IsZero() && len(missing) < 5 {
							held := map[string]any{}
							for _, typeURL := range m.types {
								t := s.types[typeURL]
								held[typeURL] = map[string]any{"nonce": t.nonce, "version": t.version, "changes": t.changes, "changesAtMark": m.baseline[s.id][typeURL].changes, "resources": t.count()}
							}
							missing = append(missing, map[string]any{"stream": s.id, "receivedSinceMark": !s.markFirst.IsZero(), "types": held})
						}
						s.mu.Unlock()
					}
				}
				emit(map[string]any{"event": "status", "id": cmd[1], "ready": f.ready, "done": done, "streams": len(f.streams), "errors": f.errors(), "missing": missing})
			default:
				emit(map[string]any{"event": "error", "message": "unknown command (mark ID TYPES | status ID | quit)"})
			}
			f.mu.Unlock()
		}
	}
}
