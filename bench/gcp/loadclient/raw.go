package main

import (
	"errors"
	"hash/maphash"
	"sync"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// The load client stands in for a fleet of Envoys, all in one process on the same two cores as
// the servers it measures: what it spends per byte received is taken from them. Decoded with the
// generated types, each response was copied three times (gRPC's frames joined, every Any's value
// copied out, kept per stream until the next response: 5 GB live for 1,000 streams at 1,000
// Backends) and each resource's bytes hashed and compared again per stream to find its
// references: two thirds of the CPU of a 1,000-stream connection storm. So responses are read
// here with protowire, down to the fields a subscription needs (type, version, nonce, the
// resources' names and bytes); what the resources refer to is worked out once per distinct
// response for the whole fleet, and a stream keeps only those names.

// rawCodec marshals requests with proto and hands responses over as rawResponse.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, errors.New("rawCodec: sends proto messages only")
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	r, ok := v.(*rawResponse)
	if !ok {
		return errors.New("rawCodec: receives into *rawResponse only")
	}
	// One contiguous copy, from a pool: only the responses being read at this moment hold one.
	buf := scratch.Get().(*[]byte)
	defer scratch.Put(buf)
	if cap(*buf) < data.Len() {
		*buf = make([]byte, data.Len())
	}
	b := (*buf)[:data.Len()]
	data.CopyTo(b)
	return r.parse(b)
}

var scratch = sync.Pool{New: func() any { b := []byte(nil); return &b }}

// rawResponse is what a stream keeps of a DiscoveryResponse or DeltaDiscoveryResponse (the two
// share field numbers for type_url, nonce and resources; version_info and system_version_info
// are both field 1).
type rawResponse struct {
	delta   bool
	typeURL string
	version string
	nonce   string
	removed []string
	// The resources, decoded once for every stream that gets the same bytes.
	decoded *decodedResources
}

// decodedResources: a response's resources as names and what each refers to, shared read-only.
type decodedResources struct {
	count int
	names []string // delta only: each resource's name, in order
	refs  []*refs  // per resource
	// union of every resource's references, sorted (SotW: the whole type's state)
	union refs
}

type responseKey struct {
	typeURL string
	delta   bool
	count   int
	length  int
	hash    uint64
}

var (
	seed      = maphash.MakeSeed()
	decodedMu sync.Mutex
	// Keyed by a 64-bit hash of the resources' bytes (with their count and total length): a false
	// match between two of the few hundred distinct responses of a run is a 2^-64 chance.
	decodedCache = map[responseKey]*decodedResources{}
)

const (
	fieldVersion   = 1
	fieldResources = 2
	fieldTypeURL   = 4
	fieldNonce     = 5
	fieldRemoved   = 6
	// In Any: type_url 1, value 2; in a delta Resource: resource (Any) 2, name 3.
	anyTypeURL       = 1
	anyValue         = 2
	deltaResourceAny = 2
	deltaName        = 3
)

var errMalformed = errors.New("malformed response")

// fields calls visit for every field of a message; visit gets the field's number and, for
// length-delimited fields, its bytes.
func fields(b []byte, visit func(num protowire.Number, payload []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		var payload []byte
		if typ == protowire.BytesType {
			payload, n = protowire.ConsumeBytes(b)
		} else {
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		if err := visit(num, payload); err != nil {
			return err
		}
	}
	return nil
}

func (r *rawResponse) parse(b []byte) error {
	var resources [][]byte
	h := maphash.Hash{}
	h.SetSeed(seed)
	length := 0
	err := fields(b, func(num protowire.Number, payload []byte) error {
		switch num {
		case fieldVersion:
			r.version = string(payload)
		case fieldTypeURL:
			r.typeURL = string(payload)
		case fieldNonce:
			r.nonce = string(payload)
		case fieldRemoved:
			if r.delta {
				r.removed = append(r.removed, string(payload))
			}
		case fieldResources:
			resources = append(resources, payload)
			var size [8]byte
			for i := range size {
				size[i] = byte(len(payload) >> (8 * i))
			}
			_, _ = h.Write(size[:])
			_, _ = h.Write(payload)
			length += len(payload)
		}
		return nil
	})
	if err != nil {
		return err
	}
	key := responseKey{typeURL: r.typeURL, delta: r.delta, count: len(resources), length: length, hash: h.Sum64()}
	decodedMu.Lock()
	d := decodedCache[key]
	decodedMu.Unlock()
	if d == nil {
		if d, err = decode(r.typeURL, r.delta, resources); err != nil {
			return err
		}
		decodedMu.Lock()
		decodedCache[key] = d
		decodedMu.Unlock()
	}
	r.decoded = d
	return nil
}

// decode works out each resource's references (a response not seen before in this process).
func decode(typeURL string, delta bool, resources [][]byte) (*decodedResources, error) {
	d := &decodedResources{count: len(resources), refs: make([]*refs, 0, len(resources))}
	eds, rds, sds := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, res := range resources {
		value := res
		if delta {
			var name string
			value = nil
			if err := fields(res, func(num protowire.Number, payload []byte) error {
				switch num {
				case deltaName:
					name = string(payload)
				case deltaResourceAny:
					value = payload
				}
				return nil
			}); err != nil {
				return nil, err
			}
			d.names = append(d.names, name)
		}
		var anyType string
		var anyBytes []byte
		if err := fields(value, func(num protowire.Number, payload []byte) error {
			switch num {
			case anyTypeURL:
				anyType = string(payload)
			case anyValue:
				anyBytes = payload
			}
			return nil
		}); err != nil {
			return nil, err
		}
		if anyType == "" {
			anyType = typeURL
		}
		r := refsOf(&anypb.Any{TypeUrl: anyType, Value: anyBytes})
		d.refs = append(d.refs, &r)
		for _, n := range r.eds {
			eds[n] = true
		}
		for _, n := range r.rds {
			rds[n] = true
		}
		for _, n := range r.sds {
			sds[n] = true
		}
	}
	d.union = refs{eds: sortedKeys(eds), rds: sortedKeys(rds), sds: sortedKeys(sds)}
	return d, nil
}

// mergeRefs is the sorted union of the references of several sets.
func mergeRefs(sets []*refs) refs {
	eds, rds, sds := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, r := range sets {
		for _, n := range r.eds {
			eds[n] = true
		}
		for _, n := range r.rds {
			rds[n] = true
		}
		for _, n := range r.sds {
			sds[n] = true
		}
	}
	return refs{eds: sortedKeys(eds), rds: sortedKeys(rds), sds: sortedKeys(sds)}
}
