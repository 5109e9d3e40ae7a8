package main

import (
	"context"
	"net"
	"sync"
	"time"
)

// dataWatch notes when the first HTTP/2 DATA frame arrives on a connection: with one stream per
// connection, the first byte of that stream's first response. gRPC-Go hands a response over only
// once the whole message is in, megabytes later at 1,000 Backends; this tells a server slow to
// start answering from one slow to finish.
type dataWatch struct {
	mu    sync.Mutex
	first time.Time
}

func (w *dataWatch) at() time.Time {
	if w == nil {
		return time.Time{}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.first
}

func (w *dataWatch) dial(ctx context.Context, addr string) (net.Conn, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	// A reconnection starts over: only the first connection's first DATA frame counts.
	if !w.at().IsZero() {
		return conn, nil
	}
	return &framesConn{Conn: conn, watch: w}, nil
}

// framesConn follows the frame headers of what the server sends (RFC 9113 section 4.1: 3 bytes
// of length, 1 of type, 1 of flags, 4 of stream id; the server's connection preface is a
// SETTINGS frame, so its bytes are frames from the first) until the first DATA frame with a
// payload, then only passes reads through.
type framesConn struct {
	net.Conn
	watch  *dataWatch
	header [9]byte
	have   int // bytes of the current frame header read so far
	skip   int // payload bytes of the current frame still to come
	done   bool
}

func (c *framesConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.done {
		c.scan(p[:n])
	}
	return n, err
}

func (c *framesConn) scan(b []byte) {
	for len(b) > 0 && !c.done {
		if c.skip > 0 {
			k := min(c.skip, len(b))
			c.skip -= k
			b = b[k:]
			continue
		}
		k := copy(c.header[c.have:], b)
		c.have += k
		b = b[k:]
		if c.have < len(c.header) {
			return
		}
		c.have = 0
		length := int(c.header[0])<<16 | int(c.header[1])<<8 | int(c.header[2])
		if c.header[3] == 0 && length > 0 {
			c.watch.mu.Lock()
			c.watch.first = time.Now()
			c.watch.mu.Unlock()
			c.done = true
			return
		}
		c.skip = length
	}
}
