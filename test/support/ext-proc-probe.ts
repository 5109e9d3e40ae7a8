import { lstatSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import * as http2 from 'node:http2';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { expect } from 'vitest';
import { PROCESS_PATH } from '../../src/ai-extension/protocol.js';
import { messageType } from '../../src/envoy/proto.js';

/*
 * Where the AI extension answers ext_proc (its answers carry provider keys): the TCP ports a
 * process listens on, and an ext_proc call as Envoy makes one, over TCP or a Unix socket.
 */

/** TCP ports a process listens on: its socket inodes (/proc/PID/fd) in LISTEN state in /proc/net/tcp{,6}. */
export function listeningTcpPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m?.[1] !== undefined) inodes.add(m[1]);
    } catch {
      // Closed meanwhile.
    }
  }
  const ports: number[] = [];
  for (const table of [`/proc/${pid}/net/tcp`, `/proc/${pid}/net/tcp6`]) {
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is f[1] (HEX_IP:HEX_PORT), st is f[3] (0A: LISTEN), inode is f[9].
      if (f.length > 9 && f[3] === '0A' && inodes.has(f[9] ?? '')) ports.push(Number.parseInt((f[1] ?? '').split(':')[1] ?? '', 16));
    }
  }
  return ports.sort((a, b) => a - b);
}

const REQUEST = messageType('envoy.service.ext_proc.v3.ProcessingRequest');

function frame(m: object): Buffer {
  const bytes = Buffer.from(REQUEST.encode(REQUEST.fromObject(m)).finish());
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(bytes.length, 1);
  return Buffer.concat([prefix, bytes]);
}

export interface Probe {
  /** ext_proc answers received. */
  answers: number;
  grpcStatus?: string;
  error?: string;
}

/**
 * An ext_proc call as Envoy makes one: an answer's headers and end, which the extension answers
 * with a message each and status 0. Over TCP (`port`) or a Unix socket (`socket`).
 */
export async function probeExtProc(target: { port: number } | { socket: string }): Promise<Probe> {
  return new Promise((resolve) => {
    let answers = 0;
    let settled = false;
    const done = (p: Omit<Probe, 'answers'>): void => {
      if (settled) return;
      settled = true;
      session.destroy();
      resolve({ answers, ...p });
    };
    const session = 'socket' in target
      ? http2.connect('http://switchyard-ai-extension', { createConnection: () => connect({ path: target.socket }) })
      : http2.connect(`http://127.0.0.1:${target.port}`);
    session.on('error', (err) => done({ error: err.message }));
    const stream = session.request({ ':method': 'POST', ':path': PROCESS_PATH, 'content-type': 'application/grpc', te: 'trailers' });
    stream.on('error', (err) => done({ error: err.message }));
    stream.on('data', (chunk: Buffer) => {
      for (let at = 0; at + 5 <= chunk.length; at += 5 + chunk.readUInt32BE(at + 1)) answers++;
    });
    stream.on('response', (headers) => {
      if (headers['grpc-status'] !== undefined) done({ grpcStatus: String(headers['grpc-status']) });
    });
    stream.on('trailers', (trailers) => done({ grpcStatus: String(trailers['grpc-status']) }));
    stream.on('close', () => done({ error: 'closed' }));
    setTimeout(() => done({ error: 'no answer in 5 s' }), 5_000).unref();
    stream.write(Buffer.concat([
      frame({ response_headers: { headers: { headers: [{ key: ':status', raw_value: Buffer.from('200') }] } } }),
      frame({ response_body: { body: Buffer.from('{}'), end_of_stream: true } }),
    ]));
  });
}

/**
 * Expects ext_proc to be served on `socket` only: the socket sits in a 0700 directory and answers
 * a call (the positive control), and none of `tcpPorts` answers one.
 */
export async function expectExtProcOnSocketOnly(socket: string, tcpPorts: readonly number[]): Promise<void> {
  expect(statSync(dirname(socket)).mode & 0o777).toBe(0o700);
  expect(lstatSync(socket).isSocket()).toBe(true);
  expect(await probeExtProc({ socket })).toMatchObject({ answers: 2, grpcStatus: '0' });
  for (const port of tcpPorts) {
    const probe = await probeExtProc({ port });
    expect(probe.answers, `port ${port}: ${JSON.stringify(probe)}`).toBe(0);
    expect(probe.grpcStatus, `port ${port}`).not.toBe('0');
  }
}
