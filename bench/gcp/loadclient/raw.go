package main

import (
	"errors"
	"hash/maphash"
	"math/bits"
	"sync"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
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
	// Read where gRPC's frames put it: at 1,000 Backends a response is megabytes, and joining
	// them into one buffer was a tenth of the client's CPU in a connection storm.
	pieces := make([][]byte, len(data))
	for i, b := range data {
		pieces[i] = b.ReadOnlyData()
	}
	return r.parse(pieces)
}

// rawResponse is what a stream keeps of a DiscoveryResponse or DeltaDiscoveryResponse (the two
// share field numbers for type_url, nonce and resources; version_info and system_version_info
// are both field 1).
type rawResponse struct {
	delta   bool
	typeURL string
	version string
	nonce   string
	removed []string
	// The resources, decoded once for every stream that gets the same bytes (Clusters and
	// Listeners), or read per stream (the other types refer to nothing a stream follows).
	decoded *decodedResources
}

// decodedResources: a response's resources as names and what each refers to, shared read-only.
type decodedResources struct {
	count int
	names []string // delta only: each resource's name, in order
	refs  []*refs  // per resource; nil when no resource refers to anything
	// union of every resource's references, sorted (SotW: the whole type's state)
	union refs
}

// noRefs is what a resource of a type that names no other resources refers to.
var noRefs = &refs{}

func (d *decodedResources) refAt(i int) *refs {
	if d.refs == nil {
		return noRefs
	}
	return d.refs[i]
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

// refersToOthers: the types whose resources name what a stream subscribes to next (EDS and RDS
// names in Clusters and Listeners, SDS names in both). Only these are decoded.
func refersToOthers(typeURL string) bool {
	return typeURL == resource.ClusterType || typeURL == resource.ListenerType
}

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

// parse reads a response in the pieces it arrived in. The top-level fields come first (the
// type URL follows the resources on the wire); then the resources of a type that refers to
// others are hashed where they lie and decoded once per distinct set for the fleet, and those
// of other types only counted (delta: named).
func (r *rawResponse) parse(pieces [][]byte) error {
	c := cursor{pieces: pieces}
	var resources []span
	length := 0
	for c.more() {
		num, typ, n, err := c.field()
		if err != nil {
			return err
		}
		if typ != protowire.BytesType {
			continue
		}
		switch num {
		case fieldVersion:
			r.version, err = c.text(n)
		case fieldTypeURL:
			r.typeURL, err = c.text(n)
		case fieldNonce:
			r.nonce, err = c.text(n)
		case fieldRemoved:
			if r.delta {
				var name string
				name, err = c.text(n)
				r.removed = append(r.removed, name)
			} else {
				err = c.skip(n)
			}
		case fieldResources:
			resources = append(resources, c.spanOf(n))
			length += n
			err = c.skip(n)
		default:
			err = c.skip(n)
		}
		if err != nil {
			return err
		}
	}
	if !refersToOthers(r.typeURL) {
		d := &decodedResources{count: len(resources)}
		if r.delta {
			d.names = make([]string, 0, len(resources))
			for _, res := range resources {
				name, err := resourceName(pieces, res)
				if err != nil {
					return err
				}
				d.names = append(d.names, name)
			}
		}
		r.decoded = d
		return nil
	}
	h := maphash.Hash{}
	h.SetSeed(seed)
	for _, res := range resources {
		var size [8]byte
		for i := range size {
			size[i] = byte(res.n >> (8 * i))
		}
		_, _ = h.Write(size[:])
		rc := res.cursor(pieces)
		if err := rc.each(res.n, func(b []byte) { _, _ = h.Write(b) }); err != nil {
			return err
		}
	}
	key := responseKey{typeURL: r.typeURL, delta: r.delta, count: len(resources), length: length, hash: h.Sum64()}
	decodedMu.Lock()
	d := decodedCache[key]
	decodedMu.Unlock()
	if d == nil {
		// A response not seen before in this process: its resources joined, once.
		joined := make([][]byte, len(resources))
		for i, res := range resources {
			rc := res.cursor(pieces)
			b, err := rc.bytes(res.n)
			if err != nil {
				return err
			}
			joined[i] = b
		}
		var err error
		if d, err = decode(r.typeURL, r.delta, joined); err != nil {
			return err
		}
		decodedMu.Lock()
		decodedCache[key] = d
		decodedMu.Unlock()
	}
	r.decoded = d
	return nil
}

// resourceName is a delta Resource's name (field 3), the Any it carries skipped over.
func resourceName(pieces [][]byte, res span) (string, error) {
	c := res.cursor(pieces)
	end := c.offset() + res.n
	name := ""
	for c.offset() < end {
		num, typ, n, err := c.field()
		if err != nil {
			return "", err
		}
		if typ != protowire.BytesType {
			continue
		}
		if num == deltaName {
			if name, err = c.text(n); err != nil {
				return "", err
			}
		} else if err := c.skip(n); err != nil {
			return "", err
		}
	}
	if c.offset() != end {
		return "", errMalformed
	}
	return name, nil
}

// cursor reads a message that arrived as several pieces (gRPC's DATA frames, not joined).
type cursor struct {
	pieces [][]byte
	i      int // the piece being read
	off    int // the position in it
	at     int // bytes read before piece i
}

// span is where some bytes of the message lie: read them again with cursor().
type span struct {
	i, off, at, n int
}

func (c *cursor) spanOf(n int) span { return span{i: c.i, off: c.off, at: c.at, n: n} }

func (s span) cursor(pieces [][]byte) cursor {
	return cursor{pieces: pieces, i: s.i, off: s.off, at: s.at}
}

// offset is how many bytes of the message were read.
func (c *cursor) offset() int { return c.at + c.off }

// more says whether bytes are left, and moves to the piece that holds the next one.
func (c *cursor) more() bool {
	for c.i < len(c.pieces) && c.off == len(c.pieces[c.i]) {
		c.at += len(c.pieces[c.i])
		c.i++
		c.off = 0
	}
	return c.i < len(c.pieces)
}

func (c *cursor) varint() (uint64, error) {
	if !c.more() {
		return 0, errMalformed
	}
	if v, n := protowire.ConsumeVarint(c.pieces[c.i][c.off:]); n > 0 {
		c.off += n
		return v, nil
	}
	// Split across pieces (or malformed): a byte at a time.
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if !c.more() {
			return 0, errMalformed
		}
		b := c.pieces[c.i][c.off]
		c.off++
		v |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return v, nil
		}
	}
	return 0, errMalformed
}

// field reads a field's tag and, for a length-delimited field, its length (its bytes come
// next); a field of another wire type is read whole.
func (c *cursor) field() (protowire.Number, protowire.Type, int, error) {
	tag, err := c.varint()
	if err != nil {
		return 0, 0, 0, err
	}
	num, typ := protowire.DecodeTag(tag)
	if num <= 0 {
		return 0, 0, 0, errMalformed
	}
	switch typ {
	case protowire.BytesType:
		n, err := c.varint()
		if err != nil || n > uint64(maxInt) {
			return 0, 0, 0, errMalformed
		}
		return num, typ, int(n), nil
	case protowire.VarintType:
		_, err = c.varint()
	case protowire.Fixed32Type:
		err = c.skip(4)
	case protowire.Fixed64Type:
		err = c.skip(8)
	default:
		// Groups: no xDS message has them.
		err = errMalformed
	}
	return num, typ, 0, err
}

const maxInt = int(^uint(0) >> 1)

// each calls visit with the next n bytes, piece by piece, and moves past them.
func (c *cursor) each(n int, visit func([]byte)) error {
	for n > 0 {
		if !c.more() {
			return errMalformed
		}
		p := c.pieces[c.i][c.off:]
		k := min(n, len(p))
		if visit != nil {
			visit(p[:k])
		}
		c.off += k
		n -= k
	}
	return nil
}

func (c *cursor) skip(n int) error { return c.each(n, nil) }

// bytes is the next n bytes: the piece's own when they lie in one, else joined into a new slice.
func (c *cursor) bytes(n int) ([]byte, error) {
	if c.more() && len(c.pieces[c.i])-c.off >= n {
		b := c.pieces[c.i][c.off : c.off+n]
		c.off += n
		return b, nil
	}
	out := make([]byte, 0, n)
	err := c.each(n, func(p []byte) { out = append(out, p...) })
	return out, err
}

// text is the next n bytes as a string (a copy: the pieces go back to gRPC's pool).
func (c *cursor) text(n int) (string, error) {
	b, err := c.bytes(n)
	return string(b), err
}

// twoFields is the payload of two length-delimited fields of a message: the last of each, as
// protobuf merges a repeated one; nil for one that is absent.
func twoFields(b []byte, first, second protowire.Number) (a, c []byte, err error) {
	err = fields(b, func(num protowire.Number, payload []byte) error {
		switch num {
		case first:
			a = payload
		case second:
			c = payload
		}
		return nil
	})
	return a, c, err
}

// decode works out each resource's references (a response not seen before in this process).
func decode(typeURL string, delta bool, resources [][]byte) (*decodedResources, error) {
	d := &decodedResources{count: len(resources), refs: make([]*refs, 0, len(resources))}
	for _, res := range resources {
		value := res
		if delta {
			name, resourceAny, err := twoFields(res, deltaName, deltaResourceAny)
			if err != nil {
				return nil, err
			}
			value = resourceAny
			d.names = append(d.names, string(name))
		}
		anyTypeBytes, anyBytes, err := twoFields(value, anyTypeURL, anyValue)
		if err != nil {
			return nil, err
		}
		anyType := string(anyTypeBytes)
		if anyType == "" {
			anyType = typeURL
		}
		r := refsOf(&anypb.Any{TypeUrl: anyType, Value: anyBytes})
		d.refs = append(d.refs, &r)
	}
	d.union = mergeRefs(d.refs)
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

// framePool is the buffer pool gRPC reads DATA frames into. gRPC's default pool clears every
// buffer it hands out; a frame's buffer is then filled whole by the read, so clearing it first
// only costs the client (a twentieth of its CPU in a connection storm) what the servers it
// measures need. Buffers come in powers of two.
type framePool struct {
	classes [40]sync.Pool
}

func (p *framePool) Get(length int) *[]byte {
	class := bits.Len(uint(max(length, 1) - 1))
	if b, ok := p.classes[class].Get().(*[]byte); ok {
		*b = (*b)[:length]
		return b
	}
	b := make([]byte, length, 1<<class)
	return &b
}

func (p *framePool) Put(b *[]byte) {
	c := cap(*b)
	if c == 0 || c&(c-1) != 0 {
		return
	}
	p.classes[bits.Len(uint(c-1))].Put(b)
}
