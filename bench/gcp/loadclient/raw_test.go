package main

import (
	"math/rand"
	"reflect"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func edsCluster(t *testing.T, name, service string) *anypb.Any {
	t.Helper()
	a, err := anypb.New(&clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{ServiceName: service},
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func assignment(t *testing.T, name string) *anypb.Any {
	t.Helper()
	a, err := anypb.New(&endpointv3.ClusterLoadAssignment{ClusterName: name})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// split cuts b into pieces of random sizes, 1 byte up, as gRPC's frames may.
func split(b []byte, r *rand.Rand) [][]byte {
	var pieces [][]byte
	for len(b) > 0 {
		n := min(1+r.Intn(40), len(b))
		pieces = append(pieces, b[:n])
		b = b[n:]
	}
	return pieces
}

// A response read in pieces, however it was cut, is the response read whole.
func TestParsePieces(t *testing.T) {
	// A long name makes a resource of about 10 KB, whose length is a varint of two bytes, the second
	// over 0x40, which a cut may split.
	long := strings.Repeat("x", 5000)
	clusters := []*anypb.Any{edsCluster(t, "c1", "a1"), edsCluster(t, "c2", ""), edsCluster(t, "c3", "a3"), edsCluster(t, long, long)}
	sotw, err := proto.Marshal(&discoveryv3.DiscoveryResponse{VersionInfo: "v7", Resources: clusters, TypeUrl: resource.ClusterType, Nonce: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	var entries []*discoveryv3.Resource
	for _, name := range []string{"a1", "a2", "a3"} {
		entries = append(entries, &discoveryv3.Resource{Name: name, Version: "1", Resource: assignment(t, name)})
	}
	delta, err := proto.Marshal(&discoveryv3.DeltaDiscoveryResponse{SystemVersionInfo: "s2", Resources: entries, TypeUrl: resource.EndpointType, Nonce: "d9", RemovedResources: []string{"gone"}})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewSource(1))
	for round := 0; round < 200; round++ {
		got := &rawResponse{}
		if err := got.parse(split(sotw, r)); err != nil {
			t.Fatal(err)
		}
		if got.version != "v7" || got.nonce != "n1" || got.typeURL != resource.ClusterType || got.decoded.count != 4 {
			t.Fatalf("sotw: %+v", got)
		}
		if want := []string{"a1", "a3", "c2", long}; !reflect.DeepEqual(got.decoded.union.eds, want) {
			t.Fatalf("sotw: EDS names %v, want %v", got.decoded.union.eds, want)
		}
		d := &rawResponse{delta: true}
		if err := d.parse(split(delta, r)); err != nil {
			t.Fatal(err)
		}
		if d.version != "s2" || d.nonce != "d9" || d.typeURL != resource.EndpointType || !reflect.DeepEqual(d.removed, []string{"gone"}) {
			t.Fatalf("delta: %+v", d)
		}
		if want := []string{"a1", "a2", "a3"}; !reflect.DeepEqual(d.decoded.names, want) || d.decoded.count != 3 {
			t.Fatalf("delta: names %v, want %v", d.decoded.names, want)
		}
	}
	// A message cut inside a field is refused, wherever the cut falls (one cut between two
	// fields is a shorter message, as protobuf reads it).
	refused := 0
	for cut := 1; cut < len(sotw); cut++ {
		whole := fields(sotw[:cut], func(protowire.Number, []byte) error { return nil })
		err := (&rawResponse{}).parse(split(sotw[:cut], r))
		if (err == nil) != (whole == nil) {
			t.Fatalf("a response cut at %d of %d bytes: read in pieces %v, whole %v", cut, len(sotw), err, whole)
		}
		if err != nil {
			refused++
		}
	}
	if refused < len(sotw)-10 {
		t.Fatalf("only %d of %d cuts refused", refused, len(sotw))
	}
}

// The pool hands out buffers of the length asked for and takes back only its own sizes.
func TestFramePool(t *testing.T) {
	p := &framePool{}
	for _, n := range []int{1, 9, 16384, 16385} {
		b := p.Get(n)
		if len(*b) != n || cap(*b) < n || cap(*b)&(cap(*b)-1) != 0 {
			t.Fatalf("Get(%d): len %d cap %d", n, len(*b), cap(*b))
		}
		p.Put(b)
	}
}
