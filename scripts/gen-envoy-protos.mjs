// Writes DIST/envoy/envoy-protos.json (DIST: the argument, default dist): the compact descriptor
// of the Envoy API types (src/envoy/proto.ts compactDescriptor), derived from the installed .proto
// files by the compiled code, so that serve and controller start without parsing them.
// Run after tsc by `npm run build`, scripts/build-image.sh and deploy/Dockerfile.
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const dist = resolve(process.argv[2] ?? 'dist');
const proto = await import(pathToFileURL(resolve(dist, 'envoy', 'proto.js')).href);
const out = resolve(dist, 'envoy', proto.DESCRIPTOR_FILE);
writeFileSync(out, `${JSON.stringify(proto.compactDescriptor(proto.parseProtos()))}\n`);
