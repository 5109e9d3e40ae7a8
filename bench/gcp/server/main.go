// Command server is go-control-plane's SnapshotCache and xDS server (ADS, SotW and delta)
// serving the resources of a `switchyard translate -o json` report. By default each type's
// version is a hash of its content (-versions per-type), so SotW clients get only the types
// that changed, as a careful go-control-plane user would set it up. Control on stdin, one
// command a line; answers on stdout, one JSON object a line:
//
//	load PATH     set PATH's resources as the next snapshot version (every node gets it)
//	prepare PATH  decode PATH into the next snapshot without serving it ("prepared")
//	commit        serve the prepared snapshot ("committed"): SetSnapshot alone, so a bench can
//	              time the push apart from protojson decoding
//	stats         this process's CPU ms and RSS
//	quit
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"

	"switchyard.dev/bench/gcp/internal/resources"
)

// contentVersions builds a snapshot whose every type carries a hash of its own content as
// version, so a SotW client is sent only the types that changed (with one version for the whole
// snapshot, every type would be re-sent on every change).
func contentVersions(res map[resource.Type][]types.Resource) (*cache.Snapshot, error) {
	snap := &cache.Snapshot{}
	marshal := proto.MarshalOptions{Deterministic: true}
	for typeURL, items := range res {
		index := cache.GetResponseType(typeURL)
		if index == types.UnknownType {
			return nil, fmt.Errorf("unknown resource type %s", typeURL)
		}
		sort.Slice(items, func(i, j int) bool { return cache.GetResourceName(items[i]) < cache.GetResourceName(items[j]) })
		hash := sha256.New()
		for _, item := range items {
			b, err := marshal.Marshal(item)
			if err != nil {
				return nil, err
			}
			hash.Write(b)
		}
		snap.Resources[index] = cache.NewResources(hex.EncodeToString(hash.Sum(nil))[:16], items)
	}
	return snap, nil
}

// everyNode puts every node on one snapshot: the bench serves one configuration to a fleet.
type everyNode struct{}

func (everyNode) ID(*corev3.Node) string { return "fleet" }

func emit(v map[string]any) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

func usage() (cpuMs float64, rssBytes int64) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpuMs = float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e6
	if status, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(line, "VmRSS:") {
				fields := strings.Fields(line)
				if len(fields) >= 2 {
					kb, _ := strconv.ParseInt(fields[1], 10, 64)
					rssBytes = kb * 1024
				}
			}
		}
	}
	return
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	initial := flag.String("resources", "", "translate report to serve as version 1")
	versions := flag.String("versions", "per-type", "per-type (a content hash per type: only changed types are pushed) or snapshot (one version for every type)")
	flag.Parse()
	if *versions != "per-type" && *versions != "snapshot" {
		fmt.Fprintln(os.Stderr, "server: -versions is per-type or snapshot")
		os.Exit(2)
	}

	ctx := context.Background()
	snapshots := cache.NewSnapshotCache(true, everyNode{}, nil)
	version := 0
	var pending *cache.Snapshot
	prepare := func(path string) (int, error) {
		res, count, err := resources.Load(path)
		if err != nil {
			return 0, err
		}
		version++
		if *versions == "per-type" {
			pending, err = contentVersions(res)
		} else {
			pending, err = cache.NewSnapshot(strconv.Itoa(version), res)
		}
		return count, err
	}
	commit := func() error {
		if pending == nil {
			return fmt.Errorf("commit: nothing prepared (prepare PATH first)")
		}
		snap := pending
		pending = nil
		return snapshots.SetSnapshot(ctx, "fleet", snap)
	}
	elapsed := func(start time.Time) float64 { return float64(time.Since(start).Microseconds()) / 1000 }
	load := func(path string) error {
		start := time.Now()
		count, err := prepare(path)
		if err != nil {
			return err
		}
		if err := commit(); err != nil {
			return err
		}
		emit(map[string]any{"event": "loaded", "version": strconv.Itoa(version), "resources": count, "ms": elapsed(start)})
		return nil
	}
	if *initial != "" {
		if err := load(*initial); err != nil {
			fmt.Fprintf(os.Stderr, "server: %v\n", err)
			os.Exit(1)
		}
	}

	// The settings of go-control-plane's example server, but for the keepalive timeout: the
	// same as Switchyard's (src/xds/server.ts), so that neither server is judged with a stricter
	// one. With the example's 5 s, a fleet of 1,000 streams in one busy load client answered
	// pings late behind megabytes of configuration and the server cut 192 of them (EOF).
	grpcServer := grpc.NewServer(
		grpc.MaxConcurrentStreams(1000000),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 20 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 30 * time.Second, PermitWithoutStream: true}),
	)
	xds := serverv3.NewServer(ctx, snapshots, nil)
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(grpcServer, xds)
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "server: %v\n", err)
		os.Exit(1)
	}
	go func() { _ = grpcServer.Serve(lis) }()
	emit(map[string]any{"event": "ready", "port": lis.Addr().(*net.TCPAddr).Port})

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fields := strings.Fields(in.Text())
		if len(fields) == 0 {
			continue
		}
		switch fields[0] {
		case "load":
			if len(fields) != 2 {
				emit(map[string]any{"event": "error", "message": "load takes one PATH"})
				continue
			}
			if err := load(fields[1]); err != nil {
				emit(map[string]any{"event": "error", "message": err.Error()})
			}
		case "prepare":
			if len(fields) != 2 {
				emit(map[string]any{"event": "error", "message": "prepare takes one PATH"})
				continue
			}
			start := time.Now()
			count, err := prepare(fields[1])
			if err != nil {
				emit(map[string]any{"event": "error", "message": err.Error()})
				continue
			}
			emit(map[string]any{"event": "prepared", "version": strconv.Itoa(version), "resources": count, "ms": elapsed(start)})
		case "commit":
			start := time.Now()
			if err := commit(); err != nil {
				emit(map[string]any{"event": "error", "message": err.Error()})
				continue
			}
			emit(map[string]any{"event": "committed", "version": strconv.Itoa(version), "ms": elapsed(start)})
		case "stats":
			cpuMs, rss := usage()
			emit(map[string]any{"event": "stats", "cpuMs": cpuMs, "rssBytes": rss})
		case "quit":
			grpcServer.Stop()
			return
		default:
			emit(map[string]any{"event": "error", "message": "unknown command " + fields[0] + " (load PATH | prepare PATH | commit | stats | quit)"})
		}
	}
	grpcServer.Stop()
}
